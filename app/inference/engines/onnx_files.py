"""The file an onnxruntime or openvino engine loads: the ONNX export of the model, built
once per machine, or a calibrated lower-precision version, each behind its gate. No
onnxruntime or openvino here: gunicorn's master calls this before forking, and their
threads must not start in the master.

What only calibrate makes (the int8 models) is checked against the sha256 its report
recorded when it wrote them, on the very bytes the engine then loads. Under MODEL_SHA256
that chain starts at the pins: the export is the pinned files' own (cache.pinned_export),
the report is read only when CALIBRATION_SHA256 pins it, and it must name the pinned
files and their export; OpenVINO's compiled-model cache, which nothing can check short
of compiling again, is not used (each worker compiles, a second or so for a YOLOv3).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from app.inference.int8.report import (
    HOW_TO_CALIBRATE,
    AgreementReport,
    CalibrationChanged,
    Int8NotCalibrated,
    NotCalibrated,
    calibrated_candidate,
    calibrated_int8_model,
)
from app.inference.onnx_export import UnsupportedLayer, WeightsError
from app.inference.onnx_export.cache import (
    ExportMismatch,
    check_stamp,
    ensure_export,
    export_paths,
    export_stamp,
    pinned_export,
    pinned_export_sha256,
    read_stamp,
)
from app.model.files import ModelDescription, ModelError

from .base import EngineUnavailable


@dataclass(frozen=True)
class ModelFile:
    path: Path  # what it is, in messages and in /model
    content: bytes | None = None  # the bytes that were checked, loaded instead of the path
    weights: bytes | None = None  # an OpenVINO model's .bin, beside its .xml in content


def prepare_onnx_model(model: ModelDescription, precision: str, min_agreement: float) -> ModelFile:
    try:
        if model.pinned is None:
            fp32 = ModelFile(ensure_export(model))
        else:
            fp32 = ModelFile(export_paths(model).fp32, pinned_export(model))
    except UnsupportedLayer as exc:
        raise EngineUnavailable(f"cannot export to ONNX: {exc}") from None
    except WeightsError as exc:
        raise ModelError(str(exc)) from None
    except OSError as exc:  # no writable place for it: the other engines still serve
        raise EngineUnavailable(f"cannot write the ONNX export: {exc}") from None
    if precision != "int8":
        return fp32
    paths = export_paths(model)
    report = calibrated_int8_model(paths, min_agreement, model.pinned)
    check_made_from(report, model)
    content = calibrated_content(paths.int8, report, "int8", model)
    if content is None:  # a report from before the digests: the stamp the model carries
        try:
            check_stamp(paths.int8, read_stamp(paths.int8), model)
        except ExportMismatch as exc:
            raise Int8NotCalibrated(f"{exc}; run `python -m app calibrate` again") from None
    return ModelFile(paths.int8, content)


@dataclass(frozen=True)
class OpenVinoFiles:
    model: ModelFile  # the ONNX export (fp32, bf16) or NNCF's int8 model (.xml)
    compiled_cache: Path | None  # OpenVINO's cache of compiled models, named by the export's key; None: none


def prepare_openvino_model(model: ModelDescription, precision: str, min_agreement: float) -> OpenVinoFiles:
    """bf16 and int8 change the numbers: served only where calibrate measured them on
    this CPU class and they passed the gate (int8/report.py)."""
    source = prepare_onnx_model(model, "fp32", min_agreement)
    paths = export_paths(model)
    if precision != "fp32":
        report = calibrated_candidate(paths, "openvino", precision, min_agreement, model.pinned)
        check_made_from(report, model)
    if precision == "int8":
        if not paths.openvino_int8.is_file():
            missing = paths.openvino_int8
            raise NotCalibrated(f"BACKEND=openvino PRECISION=int8 but {missing} is missing; calibrate again")
        xml = calibrated_content(paths.openvino_int8, report, "openvino_int8.xml", model)
        weights = calibrated_content(paths.openvino_int8.with_suffix(".bin"), report, "openvino_int8.bin", model)
        if xml is None or weights is None:  # a report from before the digests: its stamp, checked at load
            source = ModelFile(paths.openvino_int8)
        else:
            source = ModelFile(paths.openvino_int8, xml, weights)
    return OpenVinoFiles(source, None if model.pinned is not None else paths.openvino_cache)


def check_made_from(report: AgreementReport, model: ModelDescription) -> None:
    """The report names the model files (and, under MODEL_SHA256, the export) it measured."""
    recorded = report.files_sha256
    expected = export_stamp(model)
    sources = {"cfg": expected["source_cfg_sha256"], "weights": expected["source_weights_sha256"]}
    if not recorded:
        if model.pinned is not None:
            raise CalibrationChanged(
                f"the calibration report records no sha256 of the files it was made from (an earlier version "
                f"wrote it); {HOW_TO_CALIBRATE}"
            )
        return  # a report from before the digests: its models' stamps are checked instead
    if model.pinned is not None:
        sources["export"] = pinned_export_sha256(model)
    for name, digest in sources.items():
        if recorded.get(name) != digest:
            raise CalibrationChanged(
                f"the calibration report was not made from this model's {name} (it records sha256 "
                f"{recorded.get(name) or 'none'}, this {name}'s is {digest}); {HOW_TO_CALIBRATE}"
            )


def calibrated_content(path: Path, report: AgreementReport, name: str, model: ModelDescription) -> bytes | None:
    """A model calibrate wrote, its bytes as the report recorded them; None for a report
    from before the digests, which only an unpinned service reads."""
    recorded = report.files_sha256.get(name)
    if recorded is None:
        if model.pinned is not None:
            raise CalibrationChanged(f"the calibration report records no sha256 of {path.name}; {HOW_TO_CALIBRATE}")
        return None
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    if digest != recorded:
        raise CalibrationChanged(
            f"{path} is not the model calibrate wrote (its sha256 is {digest}, the report's {recorded}); "
            "run `python -m app calibrate` again"
        )
    return content
