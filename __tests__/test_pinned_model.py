"""MODEL_SHA256 binds everything that runs to the pinned files, whoever can write the
cache directory: the .cfg and .names with the .weights, the ONNX export (made again from
them and compared byte for byte), OpenVINO's compiled models (not loaded from a cache
nothing checks), and what only calibrate makes (its report pinned by CALIBRATION_SHA256,
each model it wrote checked against the sha256 the report recorded). Each forgery of
issue 33 is here: the demo counted 0 objects on dog.jpg instead of 4."""

import hashlib
import logging
import os
import shutil
from dataclasses import asdict

import numpy as np
import onnx
import pytest
from support import DATA, RunningService, refusal

from app.inference.detector import Detector
from app.inference.engines import create_engine
from app.inference.int8.candidates import CandidateResult
from app.inference.int8.cpu_class import cpu_class
from app.inference.int8.report import AgreementReport, CalibrationChanged, Int8NotCalibrated, PhotoAgreement
from app.inference.onnx_export import export_darknet
from app.inference.onnx_export.cache import (
    check_stamp,
    ensure_export,
    export_paths,
    export_stamp,
    pinned_export,
    read_stamp,
    stamp,
)
from app.model.files import ModelError, file_digest, load_model_description, model_file_sha256
from app.model.pins import parse_pins
from app.settings import ConfigError, Settings
from app.vision.images import decode_image
from app.vision.postprocess import count_by_class

DOG = {"bicycle": 1, "car": 1, "truck": 1, "dog": 1}  # the demo on dog.jpg, every engine in fp32
FILES = ("yolov3-tiny.cfg", "coco.names", "yolov3-tiny.weights")


def digests(directory, names=FILES) -> list[str]:
    return [file_digest(directory / name) for name in names]


def pinned(directory, calibration: str = "", names=FILES):
    return load_model_description(directory, parse_pins(",".join(digests(directory, names)), calibration))


def found(engine, model) -> dict[str, int]:
    detector = Detector(engine, model)
    counts = count_by_class(detector.detect(decode_image((DATA / "dog.jpg").read_bytes(), 10**8)), model.class_names)
    return {name: count for name, count in counts.items() if count}


def zeroed_first_convolution(content: bytes) -> onnx.ModelProto:
    """An edited model: its first convolution's weights zeroed (the demo then finds nothing)."""
    edited = onnx.load_from_string(content)
    weights = next(init for init in edited.graph.initializer if len(init.dims) == 4)
    weights.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weights) * 0, weights.name))
    return edited


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


# -- (a) the ONNX export --------------------------------------------------------------------


def test_the_export_is_the_same_bytes_each_time_it_is_made(demo_model):
    """What makes the check of a pinned export sound: made again, it is byte for byte
    the same, so the bytes loaded are compared with an export of the pinned files."""
    first = stamp(export_darknet(demo_model.cfg_sections, demo_model.files.weights), demo_model)
    second = stamp(export_darknet(demo_model.cfg_sections, demo_model.files.weights), demo_model)
    assert first.SerializeToString() == second.SerializeToString()


def test_an_export_edited_and_stamped_again_is_exported_again_under_model_sha256(model_copy):
    model = pinned(model_copy)
    path = ensure_export(model)
    genuine = path.read_bytes()
    path.write_bytes(stamp(zeroed_first_convolution(genuine), model).SerializeToString())
    check_stamp(path, read_stamp(path), model)  # the project's own stamp says nothing against it
    assert found(create_engine("onnxruntime", load_model_description(model_copy), 1, "cpu", "fp32"), model) == {}

    engine = create_engine("onnxruntime", model, 1, "cpu", "fp32")
    assert found(engine, model) == DOG
    assert path.read_bytes() == genuine == pinned_export(model)  # and the file is the pinned files' export again


# -- (c) OpenVINO's compiled models ----------------------------------------------------------


def test_a_patched_compiled_model_is_not_loaded_under_model_sha256(model_copy):
    pytest.importorskip("openvino")
    model = load_model_description(model_copy)
    assert found(create_engine("openvino", model, 1, "cpu", "fp32"), model) == DOG
    (blob,) = export_paths(model).openvino_cache.iterdir()
    compiled = bytearray(blob.read_bytes())
    export = onnx.load(str(ensure_export(model)))
    patched = 0
    for weights in [init for init in export.graph.initializer if len(init.dims) == 4]:
        data = onnx.numpy_helper.to_array(weights).astype(np.float32).tobytes()
        if (at := compiled.find(data[:256])) >= 0:
            compiled[at : at + len(data)] = bytes(len(data))
            patched += 1
    assert patched
    blob.write_bytes(bytes(compiled))
    assert found(create_engine("openvino", model, 1, "cpu", "fp32"), model) != DOG  # OpenVINO serves it as it is

    model = pinned(model_copy)
    assert found(create_engine("openvino", model, 1, "cpu", "fp32"), model) == DOG
    assert blob.read_bytes() == bytes(compiled)  # not read, not rewritten: no cache under a pin


# -- (b) and (d): what only calibrate makes -----------------------------------------------------


def measured(engine, precision, ms):
    return CandidateResult(engine, precision, "", 1.0, 120, 1.0, 2, 2, ms, True)  # 120 boxes: enough for the gate


def calibrated_by_hand(model, int8: bytes | None = None, openvino_int8: tuple[bytes, bytes] | None = None) -> bytes:
    """The int8 models and the report as calibrate writes them (the digests included),
    the int8 model the fastest candidate: the report's bytes."""
    paths = export_paths(model)
    made_from = export_stamp(model)
    files = {
        "cfg": made_from["source_cfg_sha256"],
        "weights": made_from["source_weights_sha256"],
        "export": hashlib.sha256(ensure_export(model).read_bytes()).hexdigest(),
    }
    candidates = [measured("onnxruntime", "fp32", 100.0)]
    if int8 is not None:
        paths.int8.write_bytes(int8)
        files["int8"] = hashlib.sha256(int8).hexdigest()
        candidates.append(measured("onnxruntime", "int8", 10.0))
    if openvino_int8 is not None:
        for suffix, content in zip((".xml", ".bin"), openvino_int8, strict=True):
            paths.openvino_int8.with_suffix(suffix).write_bytes(content)
            files[f"openvino_int8{suffix}"] = hashlib.sha256(content).hexdigest()
        candidates.append(measured("openvino", "int8", 10.0))
    report = AgreementReport(
        model={},
        calibration_photos=["a.jpg"],
        held_out=[PhotoAgreement("b.jpg", {}, {}, 120, 120)],
        fp32_nodes=[],
        pass_mark=0.98,
        cpu_class=cpu_class(),
        candidates=[asdict(candidate) for candidate in candidates],
        files_sha256=files,
    )
    content = report.to_json().encode()
    paths.int8_report.write_bytes(content)
    return content


def stand_in_int8(model, content: bytes) -> bytes:
    """An "int8" model made of the export, stamped as calibrate stamps (the chain of
    digests is what is tested here, not the quantization: test_int8.py calibrates)."""
    return stamp(onnx.load_from_string(content), model).SerializeToString()


def test_a_forged_int8_model_and_report_are_refused_or_not_read_under_model_sha256(model_copy):
    model = pinned(model_copy)
    genuine = calibrated_by_hand(model, stand_in_int8(model, ensure_export(model).read_bytes()))
    pin = hashlib.sha256(genuine).hexdigest()
    model = pinned(model_copy, calibration=pin)
    engine = create_engine("auto", model, 1, "auto", "auto")
    assert (engine.name, engine.precision) == ("onnxruntime", "int8") and found(engine, model) == DOG

    forged = stand_in_int8(model, zeroed_first_convolution(ensure_export(model).read_bytes()).SerializeToString())
    export_paths(model).int8.write_bytes(forged)  # the model alone: not the one the report recorded
    with pytest.raises(CalibrationChanged, match=r"int8\.onnx is not the model calibrate wrote"):
        create_engine("auto", model, 1, "auto", "auto")
    calibrated_by_hand(model, forged)  # and a report to match it: not the one pinned
    with pytest.raises(CalibrationChanged, match=f"does not match CALIBRATION_SHA256={pin}"):
        create_engine("auto", model, 1, "auto", "auto")
    unpinned = load_model_description(model_copy)  # without a pin the pair is served: nothing to tell it by
    assert found(create_engine("auto", unpinned, 1, "auto", "auto"), unpinned) == {}

    model = pinned(model_copy)  # MODEL_SHA256 alone: no report is read, fp32 serves
    engine = create_engine("auto", model, 1, "auto", "auto")
    assert (engine.name, engine.precision) == ("onnxruntime", "fp32") and found(engine, model) == DOG
    assert "the calibration report yolov3-tiny." in engine.selection and "is not pinned" in engine.selection
    with pytest.raises(Int8NotCalibrated, match="set CALIBRATION_SHA256"):
        create_engine("onnxruntime", model, 1, "cpu", "int8")


def test_a_report_is_checked_against_the_model_it_names_pinned_or_not(model_copy):
    unpinned = load_model_description(model_copy)
    calibrated_by_hand(unpinned, stand_in_int8(unpinned, ensure_export(unpinned).read_bytes()))
    assert create_engine("onnxruntime", unpinned, 1, "cpu", "int8").precision == "int8"
    export_paths(unpinned).int8.write_bytes(stand_in_int8(unpinned, ensure_export(unpinned).read_bytes()) + b"\0")
    with pytest.raises(CalibrationChanged, match="is not the model calibrate wrote"):
        create_engine("onnxruntime", unpinned, 1, "cpu", "int8")

    model = pinned(model_copy)
    report = calibrated_by_hand(model, stand_in_int8(model, ensure_export(model).read_bytes()))
    report = report.replace(hashlib.sha256(ensure_export(model).read_bytes()).hexdigest().encode(), b"0" * 64)
    export_paths(model).int8_report.write_bytes(report)  # a report of another export, pinned
    model = pinned(model_copy, calibration=hashlib.sha256(report).hexdigest())
    with pytest.raises(CalibrationChanged, match="the calibration report was not made from this model's export"):
        create_engine("auto", model, 1, "auto", "auto")

    earlier = AgreementReport.from_json(report.decode())
    earlier.files_sha256 = {}  # as versions before the digests wrote it, pinned
    export_paths(model).int8_report.write_text(earlier.to_json())
    model = pinned(model_copy, calibration=file_digest(export_paths(model).int8_report))
    with pytest.raises(CalibrationChanged, match="the calibration report records no sha256 of the files"):
        create_engine("onnxruntime", model, 1, "cpu", "int8")


def openvino_ir(model, content: bytes) -> tuple[bytes, bytes]:
    """An OpenVINO model (.xml, .bin) of an ONNX model, stamped as calibrate stamps NNCF's."""
    openvino = pytest.importorskip("openvino")
    from app.inference.engines.openvino_engine import stamp_ir

    target = export_paths(model).fp32.parent / "made.xml"
    openvino.save_model(stamp_ir(openvino.Core().read_model(content), export_stamp(model)), str(target))
    made = target.read_bytes(), target.with_suffix(".bin").read_bytes()
    target.unlink()
    target.with_suffix(".bin").unlink()
    return made


def test_a_forged_openvino_int8_model_and_report_are_refused_under_model_sha256(model_copy):
    model = pinned(model_copy)
    genuine = calibrated_by_hand(model, openvino_int8=openvino_ir(model, ensure_export(model).read_bytes()))
    model = pinned(model_copy, calibration=hashlib.sha256(genuine).hexdigest())
    engine = create_engine("auto", model, 1, "auto", "auto")
    assert (engine.name, engine.precision) == ("openvino", "int8") and found(engine, model) == DOG

    forged = openvino_ir(model, zeroed_first_convolution(ensure_export(model).read_bytes()).SerializeToString())
    export_paths(model).openvino_int8.with_suffix(".bin").write_bytes(forged[1])  # its weights alone
    with pytest.raises(CalibrationChanged, match=r"openvino-int8\.bin is not the model calibrate wrote"):
        create_engine("auto", model, 1, "auto", "auto")
    calibrated_by_hand(model, openvino_int8=forged)  # the model and a report to match it
    with pytest.raises(CalibrationChanged, match="does not match CALIBRATION_SHA256"):
        create_engine("auto", model, 1, "auto", "auto")
    unpinned = load_model_description(model_copy)
    assert found(create_engine("auto", unpinned, 1, "auto", "auto"), unpinned) == {}


# -- the service -------------------------------------------------------------------------------


@pytest.mark.e2e
def test_under_model_sha256_the_service_serves_the_pinned_export_and_refuses_a_forged_int8(model_copy, tmp_path):
    model = pinned(model_copy)
    path = ensure_export(model)
    genuine = path.read_bytes()
    report = calibrated_by_hand(model, stand_in_int8(model, genuine))
    path.write_bytes(stamp(zeroed_first_convolution(genuine), model).SerializeToString())
    env = {"MODEL_DIR": str(model_copy), "WORKERS": "1", "MODEL_SHA256": ",".join(digests(model_copy))}
    service = RunningService({**env, "CALIBRATION_SHA256": hashlib.sha256(report).hexdigest()}, tmp_path / "a.log")
    try:
        service.wait_ready()
        stat = service.post_photo("dog.jpg").json()["stat"]
        assert {name: count for name, count in stat.items() if count} == DOG
    finally:
        service.stop()
    assert "is not the export of the files MODEL_SHA256 pins" in service.output()
    assert path.read_bytes() == genuine

    forged = stand_in_int8(model, zeroed_first_convolution(genuine).SerializeToString())
    forged_report = calibrated_by_hand(model, forged)
    message = refusal(
        RunningService({**env, "CALIBRATION_SHA256": hashlib.sha256(report).hexdigest()}, tmp_path / "b.log")
    )
    assert f"sha256 {hashlib.sha256(forged_report).hexdigest()} does not match CALIBRATION_SHA256" in message
