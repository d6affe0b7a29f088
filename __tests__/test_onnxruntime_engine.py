"""The onnxruntime engine: the same detections as OpenCV and darknet, its export cached
once per machine, and BACKEND=auto's choice and fallback."""

import multiprocessing
import os
import shutil

import numpy as np
import pytest
from support import DATA, photo_rgb, require_tool

from app.inference.detector import Detector
from app.inference.engines import EngineUnavailable, create_engine
from app.inference.engines.darknet_engine import DarknetEngine
from app.inference.onnx_export.cache import ensure_export
from app.model.files import load_model_description
from app.vision.postprocess import count_by_class, iou_one_to_many
from synthetic.architectures import CfgWriter, write_random_model

DEBIAN_LIB = "/usr/lib/darknet/libdarknet.so"


def in_tiers(photos, fast=("dog.jpg", "horses.jpg")):
    """A photo or two in the fast tier, the rest in the e2e tier (CI runs it once):
    kite.jpg alone is 13 passes of each engine, tiled; a darknet engine loads for a second."""
    return [photo if photo in fast else pytest.param(photo, marks=pytest.mark.e2e) for photo in photos]


SAMPLE_PHOTOS = sorted(path.name for path in DATA.glob("*.jpg"))


@pytest.fixture(scope="module")
def onnx_detector(demo_model):
    engine = create_engine("onnxruntime", demo_model, threads=2)
    assert (engine.name, engine.device, engine.precision) == ("onnxruntime", "cpu", "fp32")
    return Detector(engine, demo_model)


@pytest.fixture(scope="module")
def opencv_detector(demo_model):
    return Detector(create_engine("opencv", demo_model, threads=2), demo_model)


def assert_same_detections(ours, theirs, class_names, min_iou):
    assert count_by_class(ours, class_names) == count_by_class(theirs, class_names)
    for detection in ours:
        same_class = [d for d in theirs if d.class_id == detection.class_id]
        assert iou_one_to_many(np.array(detection.box), np.array([d.box for d in same_class])).max() >= min_iou


@pytest.mark.parametrize("photo", in_tiers(SAMPLE_PHOTOS))
def test_detections_match_opencv(onnx_detector, opencv_detector, photo):
    image = photo_rgb(photo)
    ours, theirs = onnx_detector.detect(image), opencv_detector.detect(image)
    assert_same_detections(ours, theirs, onnx_detector.class_names, min_iou=0.999)
    for mine, reference in zip(sorted(ours, key=lambda d: d.box), sorted(theirs, key=lambda d: d.box), strict=True):
        assert mine.confidence == pytest.approx(reference.confidence, rel=1e-3)


@pytest.mark.parametrize("photo", in_tiers(("dog.jpg", "person.jpg", "horses.jpg"), fast=("dog.jpg",)))
def test_detections_match_debian_darknet(onnx_detector, demo_model, photo, monkeypatch):
    require_tool(os.path.isfile(DEBIAN_LIB), f"Debian's darknet is not installed (no {DEBIAN_LIB})", "darknet")
    monkeypatch.setenv("LIBDARKNET_PATH", DEBIAN_LIB)
    darknet = Detector(DarknetEngine(demo_model, threads=2), demo_model)
    image = photo_rgb(photo)
    # darknet resizes with its own bilinear code: boxes move by a pixel or two.
    assert_same_detections(onnx_detector.detect(image), darknet.detect(image), demo_model.class_names, min_iou=0.8)


def test_tiles_in_one_batch_equal_one_by_one(onnx_detector):
    image = photo_rgb("horses.jpg")
    tiles = [image[y : y + 300, x : x + 300] for x in (0, 150, 300) for y in (0, 100)]
    batched = onnx_detector.engine.predict_many(tiles, min_score=0.1)
    for tile, together in zip(tiles, batched, strict=True):
        alone = onnx_detector.engine.predict(tile, min_score=0.1)
        np.testing.assert_allclose(together.boxes, alone.boxes, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(together.scores, alone.scores, rtol=1e-4, atol=1e-6)


def test_auto_prefers_onnxruntime_on_the_cpu(demo_model):
    assert create_engine("auto", demo_model, threads=1).name == "onnxruntime"
    assert create_engine("auto", demo_model, threads=1, device="cpu").name == "onnxruntime"


def yolov2_tiny_like(tmp_path):
    """A [region] (YOLOv2) network: OpenCV runs it, the exporter does not cover it."""
    cfg = CfgWriter(160, classes=3)
    for filters in (16, 32, 64):
        cfg.conv(filters, 3)
        cfg.add("maxpool", size=2, stride=2)
    cfg.conv(128, 3)
    cfg.add("convolutional", size=1, stride=1, pad=1, filters=5 * (3 + 5), activation="linear")
    cfg.add("region", anchors="1,1, 2,2, 3,3, 4,4, 5,5", classes=3, num=5, coords=4)
    return load_model_description(write_random_model(tmp_path, cfg.text()))


def test_auto_falls_back_to_opencv_where_the_exporter_cannot_go(tmp_path):
    model = yolov2_tiny_like(tmp_path)
    assert create_engine("auto", model, threads=1).name == "opencv"
    with pytest.raises(EngineUnavailable, match=r"cannot export to ONNX: layer 8 \[region\] .*does not support"):
        create_engine("onnxruntime", model, threads=1)


def copy_model(source, target):
    target.mkdir()
    for name in ("yolov3-tiny.cfg", "coco.names"):
        shutil.copy(source / name, target / name)
    (target / "yolov3-tiny.weights").symlink_to(source / "yolov3-tiny.weights")
    return load_model_description(target)


def test_the_export_is_built_once_and_replaced_when_the_cfg_changes(model_dir, tmp_path):
    model = copy_model(model_dir, tmp_path / "model")
    first = ensure_export(model)
    built = first.stat().st_mtime_ns
    assert ensure_export(load_model_description(tmp_path / "model")) == first
    assert first.stat().st_mtime_ns == built
    cfg = tmp_path / "model" / "yolov3-tiny.cfg"
    cfg.write_text(cfg.read_text().replace("width=416", "width=320").replace("height=416", "height=320"))
    second = ensure_export(load_model_description(tmp_path / "model"))
    assert second != first and second.is_file()
    assert not first.exists()  # the export of the earlier cfg is removed
    assert sorted(p.name for p in (tmp_path / "model").glob(".*")) == []  # no temporary files left


def _export_in_process(directory: str) -> str:
    from pathlib import Path

    return str(ensure_export(load_model_description(Path(directory))))


def test_workers_starting_together_build_one_export(model_dir, tmp_path):
    copy_model(model_dir, tmp_path / "model")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        paths = pool.map(_export_in_process, [str(tmp_path / "model")] * 3)
    assert len(set(paths)) == 1
    assert [p.name for p in (tmp_path / "model").iterdir() if p.suffix == ".onnx"] == [os.path.basename(paths[0])]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: no read-only directory to test with")
def test_a_read_only_model_directory_caches_in_the_user_cache(model_dir, tmp_path, monkeypatch):
    model = copy_model(model_dir, tmp_path / "model")
    (tmp_path / "model").chmod(0o555)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        assert ensure_export(model).parent == tmp_path / "cache" / "darknet-service"
    finally:
        (tmp_path / "model").chmod(0o755)
