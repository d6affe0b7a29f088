"""The ONNX export is trusted for what it carries, not for its file name: its stamp
names the cfg and weights it came from, and the cache outside the model directory is
private to the service's user."""

import os
import shutil

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


@pytest.fixture
def model_copy(model_dir, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    for name in ("yolov3-tiny.cfg", "coco.names"):
        shutil.copy(model_dir / name, target / name)
    (target / "yolov3-tiny.weights").symlink_to(model_dir / "yolov3-tiny.weights")
    return target


def test_an_export_carries_the_sha256_of_the_files_it_was_made_from(model_copy):
    model = load_model_description(model_copy)
    found = read_stamp(ensure_export(model))
    assert found["source_weights_sha256"] == file_digest(model.files.weights)
    assert found["source_cfg_sha256"] == file_digest(model.files.cfg)


def test_a_planted_export_under_the_right_name_is_not_served(model_copy, tmp_path):
    """An ONNX file named as this model's export but stamped as made from other files
    is replaced before it is served, so MODEL_SHA256 covers what runs."""
    model = load_model_description(model_copy)
    planted = onnx.load(str(ensure_export(model)))
    onnx.helper.set_model_props(planted, {"source_weights_sha256": "0" * 64, "source_cfg_sha256": "0" * 64})
    path = export_paths(model).fp32
    path.write_bytes(planted.SerializeToString())
    with pytest.raises(ExportMismatch, match=r"was not made from yolov3-tiny\.cfg and yolov3-tiny\.weights"):
        check_stamp(path, read_stamp(path), model)

    weights_sha = file_digest(model.files.weights)
    service = RunningService(
        {"MODEL_DIR": str(model_copy), "WORKERS": "1", "MODEL_SHA256": weights_sha}, tmp_path / "log"
    )
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
