"""The file an onnxruntime or openvino engine loads: the ONNX export of the model, built
once per machine, or a calibrated lower-precision version, each behind its gate. No
onnxruntime or openvino here: gunicorn's master calls this before forking, and their
threads must not be started in the master."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.inference.int8.report import Int8NotCalibrated, NotCalibrated, calibrated_candidate, calibrated_int8_model
from app.inference.onnx_export import UnsupportedLayer, WeightsError
from app.inference.onnx_export.cache import ExportMismatch, check_stamp, ensure_export, export_paths, read_stamp
from app.model.files import ModelDescription, ModelError

from .base import EngineUnavailable


def prepare_onnx_model(model: ModelDescription, precision: str, min_agreement: float) -> Path:
    try:
        fp32 = ensure_export(model)
    except UnsupportedLayer as exc:
        raise EngineUnavailable(f"cannot export to ONNX: {exc}") from None
    except WeightsError as exc:
        raise ModelError(str(exc)) from None
    except OSError as exc:  # no writable place for it: the other engines still serve
        raise EngineUnavailable(f"cannot write the ONNX export: {exc}") from None
    if precision != "int8":
        return fp32
    int8 = calibrated_int8_model(export_paths(model), min_agreement)
    try:
        check_stamp(int8, read_stamp(int8), model)
    except ExportMismatch as exc:
        raise Int8NotCalibrated(f"{exc}; run `python -m app calibrate` again") from None
    return int8


@dataclass(frozen=True)
class OpenVinoFiles:
    model: Path  # the ONNX export (fp32, bf16) or NNCF's int8 model (.xml)
    compiled_cache: Path  # OpenVINO's cache of compiled models, named by the export's key


def prepare_openvino_model(model: ModelDescription, precision: str, min_agreement: float) -> OpenVinoFiles:
    """bf16 and int8 change the numbers: served only where calibrate measured them on
    this CPU class and they passed the gate (int8/report.py)."""
    fp32 = prepare_onnx_model(model, "fp32", min_agreement)
    paths = export_paths(model)
    if precision != "fp32":
        calibrated_candidate(paths, "openvino", precision, min_agreement)
    if precision == "int8" and not paths.openvino_int8.is_file():
        raise NotCalibrated(f"BACKEND=openvino PRECISION=int8 but {paths.openvino_int8} is missing; calibrate again")
    return OpenVinoFiles(paths.openvino_int8 if precision == "int8" else fp32, paths.openvino_cache)
