"""python -m app evaluate: AP as darknet's detector map computes it, held to an
independent evaluator (pycocotools), and counting errors checked on answers computed
by hand; the command on photos whose truth is known by construction."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import DEMO_MODEL, ROOT, starts_processes

from app.evaluation.dataset import read_dataset
from app.evaluation.metrics import LabelledBox, PhotoComparison, average_precision, evaluate
from app.vision.detection import Detection
from synthetic.labelled_photos import DOG_CLASS, write_labelled_folder

COCO = tuple((DEMO_MODEL / "coco.names").read_text().splitlines())


def dog(x, y, confidence, class_id=0):
    return Detection(class_id, "dog", confidence, (x, y, 10.0, 10.0))


def truth(x, y, class_id=0):
    return LabelledBox(class_id, (x, y, 10.0, 10.0))


def test_average_precision_is_the_all_point_area_under_the_curve():
    # Ranked: hit, miss, hit with 2 labelled -> recall .5 .5 1, precision 1 .5 .667.
    recall, precision = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert average_precision(recall, precision) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision(np.array([1.0]), np.array([1.0])) == 1.0


def test_a_second_box_on_a_taken_object_is_a_false_positive_as_in_darknet():
    photo = PhotoComparison(
        "a.jpg", [truth(0, 0), truth(100, 100)], [dog(0, 0, 0.9), dog(1, 1, 0.8), dog(100, 100, 0.3)]
    )
    metrics = evaluate([photo], ["dog"], 0.25).classes["dog"]
    assert (metrics.labelled, metrics.tp, metrics.fp, metrics.fn) == (2, 2, 1, 0)
    assert metrics.ap50 == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # hit, miss, hit


def test_count_errors_and_the_best_threshold_computed_by_hand():
    photos = [
        # 2 labelled; found at 0.9, 0.6, 0.2 -> at 0.25: 2 (right); at 0.5: 2; at 0.7: 1
        PhotoComparison("one.jpg", [truth(0, 0), truth(50, 50)], [dog(0, 0, 0.9), dog(50, 50, 0.6), dog(90, 90, 0.2)]),
        # 0 labelled; a false box at 0.3 -> at 0.25: 1 (over by one); at 0.5: 0
        PhotoComparison("two.jpg", [], [dog(10, 10, 0.3)]),
    ]
    metrics = evaluate(photos, ["dog"], 0.25).classes["dog"]
    assert metrics.counts == [(2, 2), (1, 0)]
    assert metrics.count_mae == pytest.approx(0.5) and metrics.count_bias == pytest.approx(0.5)
    sweep = dict(metrics.sweep)
    assert sweep[0.19] == pytest.approx(1.0)  # one.jpg 3 for 2, two.jpg 1 for 0: (1 + 1) / 2
    assert sweep[0.2] == pytest.approx(0.5)  # a box at 0.2 is not above 0.2: one.jpg right, two.jpg 1 over
    assert sweep[0.5] == 0.0 and sweep[0.7] == pytest.approx(0.5)
    assert metrics.count_mae_at_best == 0.0 and 0.3 <= metrics.best_count_threshold < 0.6


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lab")
    return directory, write_labelled_folder(directory)


def evaluate_command(*args, model_dir):
    starts_processes("python -m app evaluate")
    return subprocess.run(
        [sys.executable, "-m", "app", "evaluate", *map(str, args)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "MODEL_DIR": str(model_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.e2e
def test_evaluate_reads_darknets_layout_and_reports_every_number(lab, model_dir, tmp_path):
    directory, dogs = lab
    result = evaluate_command(
        directory / "obj.data",
        "--json",
        tmp_path / "e.json",
        "--plots",
        tmp_path / "plots",
        "--darknet-map",
        model_dir=model_dir,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    numbers = report["classes"]["dog"]
    assert numbers["labelled"] == sum(dogs.values()) == 30  # the .data's training-machine paths resolved here
    for key in ("tp", "fp", "fn", "precision", "recall", "ap50", "count_mae", "count_bias", "best_count_threshold"):
        assert key in numbers
    assert numbers["tp"] + numbers["fn"] == 30 and numbers["ap50"] > 0.7  # the pasted dogs are found, tiled
    assert report["map50"] == numbers["ap50"]  # dog is the only labelled class
    assert report["map50_darknet"] == pytest.approx(sum(c["ap50"] or 0 for c in report["classes"].values()) / 80)
    assert "as darknet's detector map averages it, over all 80 classes" in result.stdout
    # Tiles of the plain dishes are skipped, and each photo with one skipped counts the same with every tile.
    skipping = report["variants"][0]["tile_skipping"]
    assert skipping["tiles_skipped"] > 0 and skipping["photos_compared"] > 0 and skipping["photos_changed"] == []
    assert skipping["faintest_box_contrast"] > skipping["floor"]
    assert f"the same as with every tile run on {skipping['photos_compared']} of" in result.stdout
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "fp32-tiling-auto-counts.png",
        "fp32-tiling-auto-pr.png",
        "fp32-tiling-auto-threshold.png",
    ]


@pytest.mark.e2e
def test_tiling_modes_side_by_side_show_what_tiling_does(lab, model_dir, tmp_path):
    directory, _ = lab
    result = evaluate_command(
        directory / "images", "--tiling", "off,on", "--json", tmp_path / "e.json", model_dir=model_dir
    )
    assert result.returncode == 0, result.stderr
    variants = {v["name"]: v["classes"]["dog"] for v in json.loads((tmp_path / "e.json").read_text())["variants"]}
    # 130x200 dogs on 1600x1200 photos: one squeezed pass misses most, tiles find them.
    assert variants["fp32, tiling on"]["recall"] > variants["fp32, tiling off"]["recall"] + 0.5


@pytest.mark.e2e
def test_bad_labels_are_one_line_each_and_the_run_goes_on(lab, model_dir, tmp_path):
    directory, _ = lab
    folder = tmp_path / "bad"
    shutil.copytree(directory / "images", folder)
    (folder / "white-4.txt").write_text(
        f"{DOG_CLASS} 0.5 0.5 0.1\n"  # four numbers
        f"{DOG_CLASS} 0.5 0.5 0.1 abc\n"
        "80 0.5 0.5 0.1 0.1\n"  # class outside coco.names
        f"{DOG_CLASS} 1.2 0.5 0.1 0.1\n"  # outside the photo
        f"{DOG_CLASS} 0.5 0.5 0.1 0.1\n"  # the one good line
    )
    (folder / "kite-1.txt").unlink()  # a photo without labels
    (folder / "notes.txt").write_text("not a label file of any photo\n")
    result = evaluate_command(folder, "--json", tmp_path / "e.json", model_dir=model_dir)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any("white-4.txt line 1: expected 'class cx cy w h'" in w for w in warnings)
    assert any("white-4.txt line 2: expected 'class cx cy w h'" in w for w in warnings)
    assert any("white-4.txt line 3: class 80 is not one of the model's 80" in w for w in warnings)
    assert any("white-4.txt line 4: box 1.2 0.5 0.1 0.1 is not inside 0-1" in w for w in warnings)
    assert any("kite-1.jpg: no label file" in w and "--missing-labels empty" in w for w in warnings)
    assert json.loads((tmp_path / "e.json").read_text())["classes"]["dog"]["labelled"] == 30 - 4 - 1 + 1
    with_empty = read_dataset(folder, COCO, missing_labels="empty")
    assert any(photo.path.name == "kite-1.jpg" and photo.labels == [] for photo in with_empty.photos)


@pytest.mark.e2e
def test_a_missing_photo_is_listed_and_nothing_to_evaluate_is_one_line(lab, model_dir, tmp_path):
    directory, _ = lab
    listing = tmp_path / "valid.txt"
    listing.write_text(f"{directory / 'images' / 'white-4.jpg'}\n/nowhere/gone.jpg\n/nowhere/caf\u00e9.jpg\n")
    (tmp_path / "x.data").write_text(f"valid = {listing}\n")
    result = evaluate_command(tmp_path / "x.data", model_dir=model_dir)
    assert result.returncode == 0
    assert "warning: 2 photos not found, skipped: /nowhere/gone.jpg, /nowhere/caf\u00e9.jpg\n" in result.stderr
    (tmp_path / "none.data").write_text("classes = 80\n")
    result = evaluate_command(tmp_path / "none.data", model_dir=model_dir)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("no valid= line (the list of validation photos)")


def label_studio_export(lab_images: Path, folder: Path) -> Path:
    """The labelled photos as Label Studio's YOLO export lays them out: images/, labels/,
    classes.txt numbered alphabetically (Bubble 0, dog 1), with two labels of a class the
    model does not have, and the label file of a photo the export dropped (a non-ASCII name)."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "classes.txt").write_text("Bubble\ndog\n")
    for photo in sorted(lab_images.glob("*.jpg")):
        shutil.copy(photo, folder / "images" / photo.name)
        lines = photo.with_suffix(".txt").read_text().replace(f"{DOG_CLASS} ", "1 ")
        if photo.name == "white-4.jpg":
            lines += "0 0.9 0.9 0.01 0.01\n0 0.1 0.9 0.01 0.01\n"  # two bubbles
        (folder / "labels" / photo.with_suffix(".txt").name).write_text(lines)
    (folder / "labels" / "rotif\u00e8re-7.txt").write_text("1 0.5 0.5 0.1 0.1\n")  # its photo never exported
    return folder


@pytest.mark.e2e
def test_a_label_studio_export_is_judged_on_its_labelled_classes_and_says_what_it_left_out(lab, model_dir, tmp_path):
    directory, dogs = lab
    export = label_studio_export(directory / "images", tmp_path / "export")
    result = evaluate_command(export, "--json", tmp_path / "e.json", "--plots", tmp_path / "plots", model_dir=model_dir)
    assert result.returncode == 0, result.stderr  # a label of a class the model lacks no longer stops it
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any("left out of every number: 'Bubble' (2)" in line for line in warnings), warnings
    assert "warning: 1 label file without a photo, not evaluated" in result.stderr
    assert "export/labels/rotif\u00e8re-7.txt" in result.stderr
    assert "left out: labels of classes the model does not have, in no number above: Bubble (2)" in result.stdout
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["classes"]["dog"]["labelled"] == sum(dogs.values())
    assert report["unknown_class_labels_left_out"] == {"Bubble": 2}
    # The people and kites of the sample photos were never labelled: they decide nothing, so the one
    # threshold for all classes is the dog's own.
    overall, dog = report["overall"], report["classes"]["dog"]
    assert overall["classes"] == ["dog"]
    assert overall["best_count_threshold"] == dog["best_count_threshold"]
    assert overall["count_mae_at_best"] == pytest.approx(dog["count_mae_at_best"])
    unlabelled_found = [name for name, c in report["classes"].items() if c["fp"] and not c["labelled"]]
    assert unlabelled_found, "the sample photos' people and kites are found"
    assert "found but never labelled here, so every box is a false positive" in result.stdout
    assert (tmp_path / "plots" / "fp32-tiling-auto-threshold.png").is_file()


@pytest.mark.e2e
def test_compare_int8_needs_a_calibrated_model(lab, model_dir, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    for name in ("yolov3-tiny.cfg", "coco.names"):
        shutil.copy(model_dir / name, target / name)
    (target / "yolov3-tiny.weights").symlink_to(model_dir / "yolov3-tiny.weights")
    result = evaluate_command(lab[0] / "images", "--compare-int8", model_dir=target)
    assert (
        result.returncode == 2 and "cannot evaluate: PRECISION=int8 but this model has no calibrated" in result.stderr
    )


PERSON = COCO.index("person")
PHOTO_SIZE = (1600, 1200)


def answers_as_a_detector_gives_them(seed: int) -> list[PhotoComparison]:
    """Labels and candidates drawn at random, shaped as a detector's answers at a very
    low threshold: most labelled objects found a few pixels off, some twice, some as the
    other class, some missed, and false boxes of low confidence; labels never overlap
    (the two tools' matching rules differ only for overlapping labels)."""
    rng = np.random.default_rng(seed)
    photos = []
    for number in range(12):
        labels, found = [], []
        for cell in rng.permutation(24)[: rng.integers(0, 13)]:  # a 6x4 grid of 260x290 cells
            width, height = rng.uniform(40, 220, 2)
            x = cell % 6 * 260 + 10 + rng.uniform(0, 240 - width)
            y = cell // 6 * 290 + 10 + rng.uniform(0, 270 - height)
            class_id = DOG_CLASS if rng.random() < 0.7 else PERSON
            labels.append(LabelledBox(class_id, (x, y, width, height)))
            for first, chance, spread, confidence in ((True, 0.85, 0.08, (5, 2)), (False, 0.25, 0.2, (2, 4))):
                if rng.random() < chance:
                    dx, dy, dw, dh = rng.normal(0, spread, 4) * (width, height, width, height)
                    box = (x + dx, y + dy, max(2.0, width + dw), max(2.0, height + dh))
                    found_as = class_id if not first or rng.random() > 0.08 else DOG_CLASS + PERSON - class_id
                    found.append(Detection(found_as, COCO[found_as], float(rng.beta(*confidence)), box))
        for _ in range(rng.poisson(4)):
            width, height = rng.uniform(30, 200, 2)
            box = (rng.uniform(0, PHOTO_SIZE[0] - width), rng.uniform(0, PHOTO_SIZE[1] - height), width, height)
            class_id = DOG_CLASS if rng.random() < 0.6 else PERSON
            found.append(Detection(class_id, COCO[class_id], float(rng.beta(1.5, 6)), box))
        photos.append(PhotoComparison(f"{number}.jpg", labels, found))
    return photos


@pytest.mark.parametrize("seed", [1, 3])
def test_ap_agrees_with_pycocotools_on_the_same_detections(seed):
    """pycocotools interpolates precision at 101 recall points where darknet takes the
    whole area; on the same detections and labels the two differ by less than 0.02,
    more only on curves with few points. The arithmetic is what is compared, so the
    detections are fixed ones (a seeded draw: some 120 boxes and 70 labels over 12 photos);
    over 100 seeds and both classes the two never differed by more than 0.008."""
    from pycocotools.coco import COCO as CocoTruth
    from pycocotools.cocoeval import COCOeval

    photos = answers_as_a_detector_gives_them(seed)
    images, annotations, results = [], [], []
    for index, photo in enumerate(photos):
        images.append({"id": index, "width": PHOTO_SIZE[0], "height": PHOTO_SIZE[1]})
        for label in photo.labels:
            x, y, w, h = label.box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": label.class_id,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        results += [
            {"image_id": index, "category_id": d.class_id, "bbox": list(d.box), "score": d.confidence}
            for d in photo.candidates
        ]
    ours = evaluate(photos, COCO, 0.25)
    truth_set = CocoTruth()
    truth_set.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in enumerate(COCO)],
    }
    truth_set.createIndex()
    for class_id in (DOG_CLASS, PERSON):
        evaluation = COCOeval(truth_set, truth_set.loadRes(results), "bbox")
        evaluation.params.catIds = [class_id]
        evaluation.params.iouThrs = np.array([0.5])
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluation.params.maxDets = [1000]
        evaluation.evaluate()
        evaluation.accumulate()
        coco = float(np.mean(evaluation.eval["precision"][0, :, 0, 0, 0]))
        mine = ours.classes[COCO[class_id]].ap50
        print(f"AP50 of {COCO[class_id]}: darknet rule {mine:.4f}, pycocotools {coco:.4f}")
        assert mine == pytest.approx(coco, abs=0.02), (COCO[class_id], mine, coco)
        assert 0.2 < mine < 0.99  # a curve with misses and false boxes, not a trivial one
