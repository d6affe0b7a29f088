"""MODEL_SHA256 binds what runs to the pinned files: the .cfg and .names with the
.weights, each checked on the bytes that are parsed."""

import logging
import os
import shutil

import pytest

from app.model.files import ModelError, file_digest, load_model_description, model_file_sha256
from app.model.pins import parse_pins
from app.settings import ConfigError, Settings

FILES = ("yolov3-tiny.cfg", "coco.names", "yolov3-tiny.weights")


def digests(directory, names=FILES) -> list[str]:
    return [file_digest(directory / name) for name in names]


def pinned(directory, calibration: str = "", names=FILES):
    return load_model_description(directory, parse_pins(",".join(digests(directory, names)), calibration))


# -- MODEL_SHA256 itself --------------------------------------------------------------------


def test_model_sha256_is_the_weights_digest_alone_or_the_three_files_in_any_order():
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    assert parse_pins("") is None
    assert parse_pins(f" {a.upper()} ").digests == {a}
    assert parse_pins(f"{c},{a} {b}\n").digests == {a, b, c}
    assert parse_pins(a, b).calibration == b
    for value, message in (
        ("abc", "MODEL_SHA256: 'abc' is not a sha256"),
        (f"{a},{b[:-1]}", "is not a sha256"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_pins(value)
    with pytest.raises(ValueError, match="CALIBRATION_SHA256 is set but MODEL_SHA256 is not"):
        parse_pins("", a)
    with pytest.raises(ValueError, match="CALIBRATION_SHA256: 'x' is not a sha256"):
        parse_pins(a, "x")
    with pytest.raises(ConfigError, match="MODEL_SHA256: 'nope' is not a sha256"):
        Settings.from_env({"MODEL_DIR": "aimodel", "MODEL_SHA256": "nope"})


def test_a_weights_only_pin_serves_as_before_and_says_what_it_leaves_uncovered(model_copy, caplog):
    with caplog.at_level(logging.WARNING):
        model = pinned(model_copy, names=["yolov3-tiny.weights"])
    assert model.pinned.weights == file_digest(model_copy / "yolov3-tiny.weights")
    assert "MODEL_SHA256 pins yolov3-tiny.weights only: yolov3-tiny.cfg and coco.names are not covered" in caplog.text
    with pytest.raises(ModelError, match=r"yolov3-tiny\.weights: sha256 \w+ does not match MODEL_SHA256=0{64}"):
        load_model_description(model_copy, parse_pins("0" * 64))


def test_a_pin_of_the_three_files_refuses_an_edited_names_or_cfg(model_copy):
    pins = parse_pins(",".join(digests(model_copy)))
    assert load_model_description(model_copy, pins).class_names[16] == "dog"
    names = (model_copy / "coco.names").read_text()
    (model_copy / "coco.names").write_text(names.replace("dog\n", "DOG\n"))  # the same size, another class name
    with pytest.raises(ModelError, match=r"coco\.names: sha256 \w+ is not one of MODEL_SHA256's"):
        load_model_description(model_copy, pins)
    (model_copy / "coco.names").write_text(names)
    cfg = (model_copy / "yolov3-tiny.cfg").read_text()
    (model_copy / "yolov3-tiny.cfg").write_text(cfg.replace("ignore_thresh = .7", "ignore_thresh = .6"))
    with pytest.raises(ModelError, match=r"yolov3-tiny\.cfg: sha256 \w+ is not one of MODEL_SHA256's"):
        load_model_description(model_copy, pins)
    (model_copy / "yolov3-tiny.cfg").write_text(cfg)
    stray = parse_pins(",".join([*digests(model_copy), "f" * 64]))
    with pytest.raises(ModelError, match=f"MODEL_SHA256 holds {'f' * 64}, the sha256 of none of"):
        load_model_description(model_copy, stray)


def test_an_edit_that_keeps_the_size_and_time_of_a_file_is_hashed_again(model_copy):
    weights = model_copy / "yolov3-tiny.weights"
    real = weights.resolve()
    weights.unlink()
    shutil.copy(real, weights)
    before = model_file_sha256(weights)
    times = weights.stat()
    with weights.open("r+b") as stream:
        stream.seek(1000)
        stream.write(b"\0\0\0\0")
    os.utime(weights, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert weights.stat().st_size == times.st_size and weights.stat().st_mtime_ns == times.st_mtime_ns
    assert model_file_sha256(weights) == file_digest(weights) != before
