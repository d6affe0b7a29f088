"""The ONNX export is trusted for what it carries, not for its file name: its stamp
names the cfg and weights it came from, and the cache outside the model directory is
private to the service's user."""

import os

import onnx
import pytest
from support import RunningService

from app.inference.onnx_export.cache import (
    ExportMismatch,
    check_stamp,
    ensure_export,
    export_paths,
    is_private_directory,
    read_stamp,
    stamp,
)
from app.model.files import file_digest, load_model_description


def test_an_export_carries_the_sha256_of_the_files_it_was_made_from(model_copy):
    model = load_model_description(model_copy)
    found = read_stamp(ensure_export(model))
    assert found["source_weights_sha256"] == file_digest(model.files.weights)
    assert found["source_cfg_sha256"] == file_digest(model.files.cfg)


@pytest.mark.e2e
def test_a_planted_export_under_the_right_name_is_not_served(model_copy, tmp_path):
    """An ONNX file named as this model's export but stamped as made from other files
    is replaced before it is served (under MODEL_SHA256 even one stamped as made from
    these: test_pinned_model.py)."""
    model = load_model_description(model_copy)
    planted = onnx.load(str(ensure_export(model)))
    onnx.helper.set_model_props(planted, {"source_weights_sha256": "0" * 64, "source_cfg_sha256": "0" * 64})
    path = export_paths(model).fp32
    path.write_bytes(planted.SerializeToString())
    with pytest.raises(ExportMismatch, match=r"was not made from yolov3-tiny\.cfg and yolov3-tiny\.weights"):
        check_stamp(path, read_stamp(path), model)

    weights_sha = file_digest(model.files.weights)
    service = RunningService({"MODEL_DIR": str(model_copy), "WORKERS": "1"}, tmp_path / "log")
    try:
        service.wait_ready()
        response = service.post_photo("dog.jpg")
        assert response.json()["stat"]["dog"] == 1
    finally:
        service.stop()
    assert "was not made from yolov3-tiny.cfg and yolov3-tiny.weights" in service.output()
    assert read_stamp(path)["source_weights_sha256"] == weights_sha


def test_stamping_keeps_the_exports_own_metadata(model_copy):
    model = load_model_description(model_copy)
    exported = onnx.load(str(ensure_export(model)))
    properties = {prop.key: prop.value for prop in stamp(exported, model).metadata_props}
    assert "flops" in properties and properties["source_weights_sha256"] == file_digest(model.files.weights)


def test_only_a_private_directory_of_this_user_holds_exports(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert is_private_directory(private)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert not is_private_directory(shared)
    readable = tmp_path / "readable"
    readable.mkdir()
    readable.chmod(0o755)
    assert not is_private_directory(readable)  # others could read which weights are served
    link = tmp_path / "link"
    link.symlink_to(private)
    assert not is_private_directory(link)
    if os.getuid() == 0:  # another user's directory, as it would sit in /tmp
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        assert not is_private_directory(foreign)


def test_a_new_export_removes_the_older_ones_and_those_of_weights_no_longer_there(model_copy):
    """A newcomer swaps models in one directory: exports (each as big as its weights) of
    earlier model files go when a new one is written; nothing else there is touched."""
    old = "0123456789abcdef"
    outdated = [
        f"yolov3-tiny.{old}.onnx",  # earlier files under the same weights name
        f"yolov3-tiny.{old}.int8.onnx",
        f"yolov3-tiny.{old}.int8-report.json",
        f"yolov3.{old}.onnx",  # the demo's export, its weights removed
        f"yolov3.{old}.int8-report.json",
        f"yolov3-tiny.{old}.openvino-int8.xml",  # NNCF's int8 model of earlier files
        f"yolov3-tiny.{old}.openvino-int8.bin",
    ]
    kept = [
        "notes.onnx",
        "yolov3-tiny.onnx",
        f"yolov3-tiny.{old}.onnx.bak",
        f"yolov3-tiny.{old[:-1]}g.onnx",  # not a key of ours
        f"yolov3-tiny.{old.upper()}.onnx",
        f".yolov3-tiny.{old}.onnx.x1y2z3",  # another worker's write in progress
        "coco.names",
        "yolov3-tiny.cfg",
    ]
    for name in outdated + kept[:-2]:
        (model_copy / name).write_bytes(b"not an export")
    (model_copy / f"saved.{old}.onnx").mkdir()  # a directory, whatever its name
    # OpenVINO's compiled models of earlier files: the one kind of directory removed.
    (model_copy / f"yolov3-tiny.{old}.openvino-cache").mkdir()
    (model_copy / f"yolov3-tiny.{old}.openvino-cache" / "1234.blob").write_bytes(b"compiled")
    (model_copy / f"yolov3-tiny.{old}.openvino-cache.txt").write_bytes(b"not ours")
    (model_copy / "older").mkdir()
    (model_copy / "older" / f"yolov3.{old}.onnx").write_bytes(b"another directory: not ours")

    model = load_model_description(model_copy)
    paths = export_paths(model)
    paths.int8_report.write_bytes(b"{}")  # the current files' calibration stays
    fp32 = ensure_export(model)

    names = {path.name for path in model_copy.iterdir()}
    assert names == {
        *kept,
        "yolov3-tiny.weights",
        fp32.name,
        paths.int8_report.name,
        f"saved.{old}.onnx",
        "older",
        f"yolov3-tiny.{old}.openvino-cache.txt",
    }
    assert (model_copy / "older" / f"yolov3.{old}.onnx").is_file()
    assert all((model_copy / name).read_bytes() == b"not an export" for name in kept[:-2])


def edited_in_place(path) -> None:
    """The export's first convolution zeroed, its metadata (the stamp) kept as it was."""
    exported = onnx.load(str(path))
    weights = next(init for init in exported.graph.initializer if len(init.dims) == 4)
    array = onnx.numpy_helper.to_array(weights) * 0
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    path.write_bytes(exported.SerializeToString())


def test_an_export_edited_in_place_with_its_stamp_kept_is_exported_again(model_copy):
    model = load_model_description(model_copy)
    path = ensure_export(model)
    edited_in_place(path)
    assert read_stamp(path)["source_weights_sha256"] == file_digest(model.files.weights)  # the stamp still says so
    with pytest.raises(ExportMismatch, match="was changed after it was written"):
        check_stamp(path, read_stamp(path), model)
    assert ensure_export(model) == path
    check_stamp(path, read_stamp(path), model)  # exported again: what was written is what is there


@pytest.mark.e2e
def test_model_sha256_covers_the_export_that_runs(model_copy, tmp_path):
    """An edited export beside the pinned weights, stamped again with the project's own
    stamp, was served (the demo counted 0 dogs); now it is exported again before the
    first photo. The pin is the weights' alone, as before .cfg and .names could be pinned."""
    model = load_model_description(model_copy)
    path = ensure_export(model)
    edited_in_place(path)
    path.write_bytes(stamp(onnx.load(str(path)), model).SerializeToString())  # stamped again, as the project does
    check_stamp(path, read_stamp(path), model)  # the stamp holds: only the pin can tell
    weights_sha = file_digest(model.files.weights)
    service = RunningService(
        {"MODEL_DIR": str(model_copy), "WORKERS": "1", "MODEL_SHA256": weights_sha, "BACKEND": "onnxruntime"},
        tmp_path / "log",
    )
    try:
        service.wait_ready()
        assert service.post_photo("dog.jpg").json()["stat"]["dog"] == 1
    finally:
        service.stop()
    assert "is not the export of the files MODEL_SHA256 pins" in service.output()
    assert "MODEL_SHA256 pins yolov3-tiny.weights only" in service.output()
