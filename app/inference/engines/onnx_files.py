"""The file an onnxruntime or openvino engine loads: the ONNX export of the model, built
once per machine, or a calibrated lower-precision version, each behind its gate. No
onnxruntime or openvino here: gunicorn's master calls this before forking, and their
threads must not start in the master.

Under MODEL_SHA256 the export is the pinned files' own (cache.pinned_export), handed to
the engine as the bytes that were checked; OpenVINO's compiled-model cache, which
nothing can check short of compiling again, is not used (each worker compiles, a second
or so for a YOLOv3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.inference.int8.report import Int8NotCalibrated, NotCalibrated, calibrated_candidate, calibrated_int8_model
from app.inference.onnx_export import UnsupportedLayer, WeightsError
from app.inference.onnx_export.cache import (
    ExportMismatch,
    check_stamp,
    ensure_export,
    export_paths,
    pinned_export,
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
    int8 = calibrated_int8_model(export_paths(model), min_agreement)
    try:
        check_stamp(int8, read_stamp(int8), model)
    except ExportMismatch as exc:
        raise Int8NotCalibrated(f"{exc}; run `python -m app calibrate` again") from None
    return ModelFile(int8)


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
        calibrated_candidate(paths, "openvino", precision, min_agreement)
    if precision == "int8":
        if not paths.openvino_int8.is_file():
            missing = paths.openvino_int8
            raise NotCalibrated(f"BACKEND=openvino PRECISION=int8 but {missing} is missing; calibrate again")
        source = ModelFile(paths.openvino_int8)
    return OpenVinoFiles(source, None if model.pinned is not None else paths.openvino_cache)
