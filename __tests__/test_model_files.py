import os
from pathlib import Path

import pytest

from app.model.files import ModelError, discover_model_files, load_model_description, read_class_names


@pytest.fixture
def model_copy(model_dir: Path, tmp_path: Path) -> Path:
    """The demo model in a directory of the test's own (weights linked, not copied)."""
    os.symlink(model_dir / "yolov3-tiny.weights", tmp_path / "yolov3-tiny.weights")
    (tmp_path / "yolov3-tiny.cfg").write_text((model_dir / "yolov3-tiny.cfg").read_text())
    (tmp_path / "coco.names").write_text((model_dir / "coco.names").read_text())
    return tmp_path


def test_demo_model_is_described(model_dir):
    model = load_model_description(model_dir)
    assert len(model.class_names) == 80
    assert model.class_names[:3] == ("person", "bicycle", "car")
    assert (model.network.width, model.network.height, model.network.letter_box) == (416, 416, False)


def test_data_file_with_trained_machine_paths_is_resolved_in_the_model_dir(model_copy):
    (model_copy / "coco.names").rename(model_copy / "obj.names")
    (model_copy / "obj.data").write_text(
        "classes = 80\ntrain = /home/trainer/data/train.txt\nnames = C:\\darknet\\data\\obj.names\nbackup = backup/\n"
    )
    files = discover_model_files(model_copy)
    assert files.names == model_copy / "obj.names"
    assert files.data == model_copy / "obj.data"
    assert len(load_model_description(model_copy).class_names) == 80


def test_data_file_classes_must_match_names(model_copy):
    (model_copy / "obj.data").write_text("classes=6\nnames=coco.names\n")
    with pytest.raises(ModelError, match=r"classes=6 but coco\.names has 80 names"):
        load_model_description(model_copy)


def test_names_are_stripped_and_blank_lines_ignored(tmp_path):
    names = tmp_path / "obj.names"
    names.write_bytes(b"\xef\xbb\xbfRotifer\r\n One-Egg-Carrier \r\n\r\nDead\r\n\r\n")
    assert read_class_names(names) == ("Rotifer", "One-Egg-Carrier", "Dead")


def test_cfg_classes_must_match_names(model_copy):
    (model_copy / "coco.names").write_text("Rotifer\nDead\n")
    with pytest.raises(ModelError, match=r"\[yolo\] classes=80 but coco.names has 2 names"):
        load_model_description(model_copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d / "yolov3-tiny.weights").unlink(), "no .weights file"),
        (lambda d: (d / "coco.names").unlink(), "no .names file"),
        (lambda d: (d / "other.cfg").write_text("[net]\n"), "ambiguous model .*2 .cfg files"),
        (lambda d: (d / "b.weights").write_bytes(b"x"), "ambiguous model .*2 .weights files"),
        (lambda d: (d / "coco.names").write_text("a\nb\na\n"), "repeated: a"),
        (lambda d: (d / "coco.names").write_text("\n \n"), "holds no class names"),
        (lambda d: (d / "obj.data").write_text("names=missing.names\n"), "names=missing.names not found"),
    ],
)
def test_broken_models_are_one_clear_line(model_copy, change, message):
    change(model_copy)
    with pytest.raises(ModelError, match=message) as error:
        load_model_description(model_copy)
    assert "\n" not in str(error.value)


def test_missing_directory(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model_description(tmp_path / "nowhere")
