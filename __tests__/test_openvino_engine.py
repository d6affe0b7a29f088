"""The openvino engine on the project's export: the same boxes as onnxruntime fp32 in
f32, tiles batched, compiled models cached beside the export, bf16 and int8 only behind
the calibration's gate, and PRECISION=auto taking what the report measured here."""

import shutil
from dataclasses import asdict

import cv2
import numpy as np
import pytest
from support import ROOT

from app.inference.detector import Detector
from app.inference.engines import create_engine
from app.inference.int8.candidates import CandidateResult
from app.inference.int8.cpu_class import cpu_class, cpu_has_bf16
from app.inference.int8.report import AgreementReport, NotCalibrated
from app.inference.onnx_export.cache import export_paths
from app.model.files import load_model_description
from app.vision.detection import DEFAULT_THRESHOLD
from app.vision.images import decode_image
from app.vision.postprocess import count_by_class

pytest.importorskip("openvino")

PHOTOS = sorted((ROOT / "data").glob("*.jpg"))
# Against onnxruntime fp32: two photos in the fast tier, the rest in the e2e tier (CI
# runs it once; kite.jpg alone is 13 passes of each engine, tiled).
FAST_PHOTOS = ("dog.jpg", "horses.jpg")


@pytest.fixture
def model_copy(model_dir, tmp_path):
    """The demo model in a directory of its own: reports and caches go beside the weights."""
    for name in ("yolov3-tiny.cfg", "coco.names"):
        shutil.copy(model_dir / name, tmp_path / name)
    (tmp_path / "yolov3-tiny.weights").symlink_to(model_dir / "yolov3-tiny.weights")
    return load_model_description(tmp_path)


@pytest.fixture(scope="module")
def demo_model(model_dir):
    return load_model_description(model_dir)


def photo(path):
    return decode_image(path.read_bytes(), 100_000_000)


@pytest.fixture(scope="module")
def f32_and_reference(demo_model):
    reference = Detector(create_engine("onnxruntime", demo_model, 2, "cpu", "fp32"), demo_model)
    openvino = Detector(create_engine("openvino", demo_model, 2, "cpu", "fp32"), demo_model)
    assert (openvino.engine.name, openvino.engine.precision, openvino.engine.device) == ("openvino", "fp32", "cpu")
    return openvino, reference


@pytest.mark.parametrize(
    "path",
    [p if p.name in FAST_PHOTOS else pytest.param(p, marks=pytest.mark.e2e) for p in PHOTOS],
    ids=lambda p: p.name,
)
def test_openvino_f32_finds_the_boxes_onnxruntime_fp32_finds_on_every_sample_photo(f32_and_reference, path):
    openvino, reference = f32_and_reference
    image = photo(path)
    expected, found = reference.detect(image), openvino.detect(image)
    assert [d.class_name for d in found] == [d.class_name for d in expected]
    assert np.allclose([d.box for d in found], [d.box for d in expected], atol=0.05)
    assert np.allclose([d.confidence for d in found], [d.confidence for d in expected], atol=1e-4)


def test_tiles_in_one_batch_give_what_each_gives_alone(demo_model):
    engine = create_engine("openvino", demo_model, 2, "cpu", "fp32")
    image = photo(ROOT / "data" / "dog.jpg")
    tiles = [image[:416, :416], image[100:516, 200:616], image[160:, 352:]]
    batched = engine.predict_many(tiles, DEFAULT_THRESHOLD)
    for alone, together in zip([engine.predict(t, DEFAULT_THRESHOLD) for t in tiles], batched, strict=True):
        assert np.allclose(alone.boxes, together.boxes, atol=1e-3)
        assert np.allclose(alone.scores, together.scores, atol=1e-5)


def test_compiled_models_are_cached_beside_the_export_under_its_key(model_copy):
    create_engine("openvino", model_copy, 1, "cpu", "fp32")
    cache = export_paths(model_copy).openvino_cache
    assert cache.parent == model_copy.files.weights.parent and export_paths(model_copy).key in cache.name
    blobs = sorted(cache.iterdir())
    assert blobs
    create_engine("openvino", model_copy, 1, "cpu", "fp32")  # the second load reads the cache
    assert sorted(cache.iterdir()) == blobs


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_a_precision_change_is_refused_before_calibration(model_copy, precision):
    with pytest.raises(
        NotCalibrated, match=f"BACKEND=openvino PRECISION={precision} but this model has no calibration"
    ):
        create_engine("openvino", model_copy, 1, "cpu", precision)


def test_auto_without_a_report_serves_onnxruntime_fp32_and_says_why(model_copy):
    engine = create_engine("auto", model_copy, 1, "auto", "auto")
    assert (engine.name, engine.precision) == ("onnxruntime", "fp32")
    assert engine.selection.startswith("fp32: no calibration report for this model")


def write_report(model, *candidates, measured_on=None):
    report = AgreementReport(
        model={},
        calibration_photos=["a.jpg"],
        held_out=[],
        fp32_nodes=[],
        pass_mark=0.98,
        cpu_class=measured_on or cpu_class(),
        candidates=[asdict(candidate) for candidate in candidates],
    )
    export_paths(model).int8_report.write_text(report.to_json())


def measured(engine, precision, ms, share=1.0, boxes=120):
    # 120 held-out boxes by default: enough for the gate (agreement.MIN_GATE_BOXES)
    return CandidateResult(engine, precision, "", share, boxes, share, 2, 2, ms, share >= 0.98)


def test_auto_serves_the_fastest_candidate_that_kept_the_counts_here(model_copy):
    write_report(
        model_copy,
        measured("onnxruntime", "fp32", 100.0),
        measured("openvino", "int8", 40.0, share=0.9),
        measured("openvino", "fp32", 80.0),
    )
    engine = create_engine("auto", model_copy, 1, "auto", "auto")
    assert (engine.name, engine.precision) == ("openvino", "fp32")
    assert "openvino fp32: the fastest that kept the counts" in engine.selection
    assert "openvino int8 matched 90.0% held out" in engine.selection
    # Named, the reference serves exactly as before, whatever the report says.
    engine = create_engine("onnxruntime", model_copy, 1, "auto", "fp32")
    assert (engine.name, engine.precision, engine.selection) == ("onnxruntime", "fp32", "PRECISION=fp32 as set")


def test_auto_ignores_a_report_measured_on_another_cpu_class(model_copy):
    other = "avx2" if cpu_class() != "avx2" else "amx"
    write_report(
        model_copy, measured("onnxruntime", "fp32", 100.0), measured("openvino", "fp32", 50.0), measured_on=other
    )
    engine = create_engine("auto", model_copy, 1, "auto", "auto")
    assert (engine.name, engine.precision) == ("onnxruntime", "fp32")
    assert f"measured on a {other} CPU, this one is {cpu_class()}" in engine.selection


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has neither AMX nor AVX512_BF16")
def test_calibrated_bf16_serves_and_keeps_the_counts_of_every_sample_photo(model_copy):
    write_report(model_copy, measured("onnxruntime", "fp32", 100.0), measured("openvino", "bf16", 50.0))
    engine = create_engine("auto", model_copy, 2, "auto", "auto")
    assert (engine.name, engine.precision) == ("openvino", "bf16")
    bf16 = Detector(engine, model_copy)
    reference = Detector(create_engine("onnxruntime", model_copy, 2, "cpu", "fp32"), model_copy)
    names = reference.class_names
    for path in PHOTOS:
        image = photo(path)
        assert count_by_class(bf16.detect(image), names) == count_by_class(reference.detect(image), names), path.name
    # And a big photo, tiled as the service tiles it (a 1700x1300 scale of the street
    # scene: 20 tiles at 416; 3400x2600 took 80 for the same check).
    big = cv2.resize(photo(ROOT / "data" / "person.jpg"), (1700, 1300))
    assert count_by_class(bf16.detect(big), names) == count_by_class(reference.detect(big), names)


def test_bf16_that_failed_the_gate_is_refused_with_its_share(model_copy):
    write_report(model_copy, measured("onnxruntime", "fp32", 100.0), measured("openvino", "bf16", 50.0, share=0.9))
    with pytest.raises(NotCalibrated, match=r"PRECISION=bf16 refused: it matched 90.0% of 120 onnxruntime fp32 boxes"):
        create_engine("openvino", model_copy, 1, "cpu", "bf16")


def test_bf16_whose_agreement_rests_on_too_few_boxes_is_refused_and_says_so(model_copy):
    write_report(model_copy, measured("onnxruntime", "fp32", 100.0), measured("openvino", "bf16", 50.0, boxes=25))
    with pytest.raises(NotCalibrated, match=r"refused: its agreement rests on 25 boxes; at least 100 needed"):
        create_engine("openvino", model_copy, 1, "cpu", "bf16")
