"""evaluate reads an export's own class names and maps its labels to the model's classes
by name: Label Studio numbers classes alphabetically, CVAT in its own order, and a label
counted under another class is an error no number would show."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import DATA, DEMO_MODEL, ROOT

from app.evaluation.class_names import ClassNamesError, map_by_name, read_names
from app.evaluation.dataset import DatasetError, read_dataset

COCO = tuple((DEMO_MODEL / "coco.names").read_text().splitlines())
DOG, PERSON, HORSE = COCO.index("dog"), COCO.index("person"), COCO.index("horse")


def export(folder: Path, names_file: str, names: str, labels: dict[str, str]) -> Path:
    """An export as the tools write it: images/, labels/ and a names file at the top."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for photo, lines in labels.items():
        shutil.copy(DATA / photo, folder / "images" / photo)
        (folder / "labels" / photo).with_suffix(".txt").write_text(lines)
    (folder / names_file).write_text(names)
    return folder


def classes_of(dataset) -> list[list[int]]:
    return [[label.class_id for label in photo.labels] for photo in sorted(dataset.photos, key=lambda p: p.path)]


def test_a_label_studio_export_numbered_alphabetically_is_mapped_to_the_model_by_name(tmp_path):
    # classes.txt as Label Studio writes it: horse 0, person 1, dog 2... the model says person 0, dog 16, horse 17.
    folder = export(
        tmp_path / "ls",
        "classes.txt",
        "Horse\nperson\ndog\n",
        {"dog.jpg": "2 0.3 0.6 0.3 0.5\n1 0.7 0.2 0.1 0.1\n", "horses.jpg": "0 0.2 0.6 0.4 0.4\n"},
    )
    dataset = read_dataset(folder / "images", COCO)  # the names file one folder up is found too
    assert classes_of(dataset) == [[DOG, PERSON], [HORSE]]
    assert any("classes.txt" in note and "mapped" in note for note in dataset.notes)


def test_a_cvat_yolo_export_without_valid_is_read_from_its_train_list_with_a_note(tmp_path):
    root = tmp_path / "cvat"
    (root / "obj_train_data").mkdir(parents=True)
    shutil.copy(DATA / "person.jpg", root / "obj_train_data" / "person.jpg")
    (root / "obj_train_data" / "person.txt").write_text("1 0.5 0.5 0.2 0.6\n0 0.2 0.7 0.2 0.2\n")
    (root / "obj.names").write_text("dog\nperson\n")  # CVAT's label order
    (root / "train.txt").write_text("data/obj_train_data/person.jpg\n")
    (root / "obj.data").write_text("classes = 2\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n")
    dataset = read_dataset(root / "obj.data", COCO)
    assert classes_of(dataset) == [[PERSON, DOG]]
    assert any("no valid= line" in note and "train=" in note for note in dataset.notes)


@pytest.mark.parametrize(
    "yaml_names",
    ["names: [horse, person, dog]\n", "names:\n  2: dog\n  0: horse\n  1: person\nnc: 3\n"],
    ids=["a list", "a mapping"],
)
def test_an_ultralytics_data_yaml_gives_the_names_as_a_list_or_a_mapping(tmp_path, yaml_names):
    folder = export(tmp_path / "y", "data.yaml", yaml_names, {"dog.jpg": "2 0.3 0.6 0.3 0.5\n"})
    assert classes_of(read_dataset(folder / "images", COCO)) == [[DOG]]


def test_an_export_numbered_as_the_model_needs_no_note(tmp_path):
    folder = export(tmp_path / "same", "obj.names", "\n".join(COCO) + "\n\n", {"dog.jpg": f"{DOG} 0.3 0.6 0.3 0.5\n"})
    dataset = read_dataset(folder, COCO)
    assert classes_of(dataset) == [[DOG]] and dataset.notes == []


def test_labels_of_a_name_the_model_does_not_have_are_left_out_in_one_line_and_the_rest_evaluated(tmp_path):
    used = export(
        tmp_path / "used",
        "classes.txt",
        "Unicorn\ndog\n",
        {"dog.jpg": "0 0.5 0.5 0.1 0.1\n1 0.3 0.6 0.3 0.5\n", "horses.jpg": "0 0.2 0.2 0.1 0.1\n"},
    )
    dataset = read_dataset(used, COCO)
    assert classes_of(dataset) == [[DOG], []]
    assert dataset.unknown_labels == {"Unicorn": 2}
    (line,) = [problem for problem in dataset.problems if "Unicorn" in problem]
    assert "labels of classes the model does not have are left out of every number: 'Unicorn' (2)" in line
    # Every label of a class the model lacks: the names disagree throughout, nothing to evaluate.
    only = export(tmp_path / "only", "classes.txt", "Unicorn\ndog\n", {"dog.jpg": "0 0.5 0.5 0.1 0.1\n"})
    with pytest.raises(DatasetError, match=r"'Unicorn' \(1 labels\) is not a class of the model"):
        read_dataset(only, COCO)
    unused = export(tmp_path / "unused", "classes.txt", "Unicorn\ndog\n", {"dog.jpg": "1 0.3 0.6 0.3 0.5\n"})
    dataset = read_dataset(unused, COCO)
    assert classes_of(dataset) == [[DOG]]
    assert any("Unicorn" in note for note in dataset.notes)


def test_names_match_whatever_their_case_and_spaces_but_never_by_position():
    mapped = map_by_name(("Dog ", "PERSON", "rotifer"), COCO, Path("classes.txt"))
    assert mapped.to_model == {0: DOG, 1: PERSON}
    assert mapped.unknown == {2: "rotifer"}


def test_a_names_file_that_cannot_be_read_says_why(tmp_path):
    (tmp_path / "data.yaml").write_text("nc: 2\n")
    with pytest.raises(ClassNamesError, match="no names:"):
        read_names(tmp_path / "data.yaml")
    (tmp_path / "gaps.yaml").write_text("names: {0: dog, 2: person}\n")
    with pytest.raises(ClassNamesError, match=r"must run 0\.\.1"):
        read_names(tmp_path / "gaps.yaml")


@pytest.mark.e2e  # runs python -m app evaluate
def test_the_command_refuses_an_export_none_of_whose_labels_it_can_map_in_one_line(tmp_path):
    folder = export(tmp_path / "bad", "classes.txt", "Rotifer\ndog\n", {"dog.jpg": "0 0.5 0.5 0.1 0.1\n"})
    result = subprocess.run(
        [sys.executable, "-m", "app", "evaluate", str(folder)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "MODEL_DIR": str(DEMO_MODEL)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"cannot evaluate: {folder / 'classes.txt'}: class 'Rotifer' (1 labels) is not a class of the model "
        "(person, bicycle, car, motorbike, aeroplane, bus, train, truck...), and no label is of one that is: "
        "rename it in the export or the model's .names so the two agree"
    ]


def test_label_files_whose_photo_is_missing_are_named_in_one_line(tmp_path):
    # Label Studio's export left out the photos with non-ASCII names; their label files stayed.
    folder = export(tmp_path / "ls", "classes.txt", "dog\n", {"dog.jpg": "0 0.3 0.6 0.3 0.5\n"})
    for name in ("caf\u00e9-1.txt", "rotif\u00e8re-2.txt"):
        (folder / "labels" / name).write_text("0 0.5 0.5 0.1 0.1\n")
    (folder / "notes.txt").write_text("the lab's notes, not labels\n")
    for source in (folder, folder / "images"):  # the export, or its images/ folder
        dataset = read_dataset(source, COCO)
        (line,) = [problem for problem in dataset.problems if "without a photo" in problem]
        assert line.startswith("2 label files without a photo, not evaluated")
        assert line.endswith(
            "ls/labels/caf\u00e9-1.txt, ls/labels/rotif\u00e8re-2.txt"
            if source == folder
            else "labels/caf\u00e9-1.txt, labels/rotif\u00e8re-2.txt"
        )
        assert classes_of(dataset) == [[DOG]]
