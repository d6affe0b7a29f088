from pathlib import Path

import pytest

from app.inference.onnx_export.weights import read_weights, write_weights
from app.model.darknet_cfg import parse_cfg
from app.model.files import (
    ModelError,
    discover_model_files,
    floats_the_cfg_reads,
    load_model_description,
    read_class_names,
    weights_floats,
)
from synthetic.architectures import ARCHITECTURES, random_weights

DEMO_FLOATS = 8858734  # yolov3-tiny.weights: 35434956 bytes, a 20-byte header


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


def five_classes(model: Path, filters: int) -> None:
    """What a lab's IT person does to the demo cfg for their 5 classes: classes=5 in both
    [yolo] layers, filters= before them set to `filters`, 5 names."""
    cfg = model / "yolov3-tiny.cfg"
    cfg.write_text(cfg.read_text().replace("classes=80", "classes=5").replace("filters=255", f"filters={filters}"))
    (model / "coco.names").write_text("Rotifer\nOne-Egg-Carrier\nDead\nCiliates\nClumps\n")


def test_the_demo_weights_hold_the_floats_its_cfg_reads(model_dir):
    model = load_model_description(model_dir)
    assert weights_floats(model.files.weights) == DEMO_FLOATS
    assert floats_the_cfg_reads(list(model.cfg_sections)) == DEMO_FLOATS


@pytest.mark.parametrize(
    ("name", "floats"),
    # The published COCO weights of each (file size less the 20-byte header, / 4).
    [("yolov3", 62001757), ("yolov3-tiny", DEMO_FLOATS), ("yolov4", 64429405), ("yolov4-tiny", 6062814)],
)
def test_the_float_count_of_each_architecture_is_that_of_its_published_weights(name, floats):
    assert floats_the_cfg_reads(parse_cfg(ARCHITECTURES[name](size=416, classes=80))) == floats


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_each_architecture_reads_the_floats_its_random_weights_hold(name):
    # test_onnx_export.py loads each of them too, through load_model_description; a
    # quarter of the filters keeps every layer at a sixteenth of the weights.
    text = ARCHITECTURES[name](size=256, classes=3, width=0.25)
    assert floats_the_cfg_reads(parse_cfg(text)) == len(random_weights(text))


def test_weights_longer_than_the_cfg_reads_are_refused_naming_both_counts(model_copy):
    five_classes(model_copy, filters=30)
    with pytest.raises(ModelError) as error:
        load_model_description(model_copy)
    assert str(error.value) == (
        f"{model_copy / 'yolov3-tiny.weights'} holds {DEMO_FLOATS} floats, yolov3-tiny.cfg needs 8685484: "
        "the weights were trained for another cfg (classes, filters or layers differ)"
    )


def test_weights_shorter_than_the_cfg_reads_are_refused_naming_both_counts(model_dir, model_copy):
    header, values = read_weights(model_dir / "yolov3-tiny.weights")
    (model_copy / "yolov3-tiny.weights").unlink()
    write_weights(model_copy / "yolov3-tiny.weights", values[:-1000], header)
    with pytest.raises(ModelError, match=rf"holds {DEMO_FLOATS - 1000} floats, yolov3-tiny.cfg needs {DEMO_FLOATS}: "):
        load_model_description(model_copy)
    (model_copy / "yolov3-tiny.weights").write_bytes(b"\0" * 15)
    with pytest.raises(ModelError, match=r"15 bytes is too short for a darknet \.weights file"):
        load_model_description(model_copy)


def test_filters_that_do_not_fit_the_yolo_layer_name_the_cfg_line(model_copy):
    five_classes(model_copy, filters=255)
    with pytest.raises(ModelError) as error:
        load_model_description(model_copy)
    assert str(error.value) == (
        f"{model_copy / 'yolov3-tiny.cfg'} line 127: [convolutional] filters=255 before [yolo] (line 135) "
        "with classes=5 and 3 anchors in mask must be (5 + 5) x 3 = 30"
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("[upsample]\n", "[local_avgpool]\n\n[upsample]\n"),  # a layer type darknet's forks do not share
        ("activation=linear", "activation=linear\ndontloadscales=1"),
        ("activation=linear", "activation=linear\nshare_index=-2"),
    ],
)
def test_a_layer_the_count_does_not_know_skips_the_check_instead_of_refusing(model_copy, old, new):
    five_classes(model_copy, filters=30)  # weights longer than the cfg reads
    cfg = model_copy / "yolov3-tiny.cfg"
    cfg.write_text(cfg.read_text().replace(old, new, 1))
    assert floats_the_cfg_reads(parse_cfg(cfg.read_text())) is None
    assert len(load_model_description(model_copy).class_names) == 5


def test_a_names_file_of_100k_lines_is_checked_in_one_pass(tmp_path):
    """names.count per name took 20 s for 40,000 names."""
    names = tmp_path / "big.names"
    names.write_text("".join(f"class{i % 60_000}\n" for i in range(100_000)))
    with pytest.raises(ModelError, match=r"repeated: class0, class1, .* and 39990 more"):
        read_class_names(names)
