"""The ONNX file an onnxruntime engine loads: the export of the model, built once per
machine, or its calibrated int8 version. No onnxruntime here: gunicorn's master calls
this before forking, and onnxruntime's threads must not be started in the master."""

from __future__ import annotations

from pathlib import Path

from app.inference.int8.report import Int8NotCalibrated, calibrated_int8_model
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
