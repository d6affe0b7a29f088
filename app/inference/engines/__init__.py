"""Inference engines behind one interface; each is imported only when it is chosen,
so a machine without an engine's library still serves with the others."""

from __future__ import annotations

from app.model.files import ModelDescription
from app.settings import DEFAULT_INT8_MIN_AGREEMENT

from .base import Engine, EngineUnavailable

# BACKEND=auto: fastest first, each with the device it must have to be the fastest.
# darknet wins only on a GPU; on a CPU onnxruntime on our ONNX export is the fastest
# (README, Measure), OpenCV's DNN the fallback for models the exporter does not cover.
AUTO_ORDER = (("darknet", "cuda"), ("onnxruntime", "cpu"), ("opencv", "cpu"))
INT8_ENGINES = ("onnxruntime",)  # Settings refuses PRECISION=int8 with any other BACKEND


def create_engine(
    backend: str,
    model: ModelDescription,
    threads: int,
    device: str = "auto",
    precision: str = "fp32",
    min_agreement: float = DEFAULT_INT8_MIN_AGREEMENT,
) -> Engine:
    """precision int8 exists only for onnxruntime; min_agreement gates it (app/int8)."""
    if backend != "auto":
        return _load(backend, model, threads, device, precision, min_agreement)
    reasons = []
    for name, needs in AUTO_ORDER:
        if device not in ("auto", needs) or (precision == "int8" and name not in INT8_ENGINES):
            continue
        try:
            return _load(name, model, threads, needs, precision, min_agreement)
        except EngineUnavailable as exc:
            reasons.append(f"{name}: {exc}")
    raise EngineUnavailable("no engine available (" + "; ".join(reasons) + ")")


def prepare_engine(backend: str, model: ModelDescription, precision: str, min_agreement: float) -> None:
    """Work done once per machine before workers start (gunicorn's master): the ONNX
    export, and the int8 gate, so a refused PRECISION=int8 is one line, not one per
    worker. Whatever cannot be prepared here is left to the workers' own fallback."""
    if backend not in ("auto", "onnxruntime"):
        return
    try:
        from .onnx_files import prepare_onnx_model

        prepare_onnx_model(model, precision, min_agreement)
    except (ImportError, EngineUnavailable):
        pass


def _load(name: str, model: ModelDescription, threads: int, device: str, precision: str, min_agreement: float):
    if name == "opencv":
        from .opencv_engine import OpenCVEngine

        return OpenCVEngine(model, threads=threads, device=device)
    if name == "darknet":
        from .darknet_engine import DarknetEngine

        return DarknetEngine(model, threads=threads, device=device)
    if name == "onnxruntime":
        try:
            from .onnxruntime_engine import load_onnxruntime_engine
        except ImportError as exc:  # optional: the other engines serve without it
            raise EngineUnavailable(f"the onnxruntime engine needs the {exc.name} package") from None

        return load_onnxruntime_engine(model, threads, device, precision, min_agreement)
    raise EngineUnavailable(f"unknown backend {name!r}")


__all__ = ["Engine", "EngineUnavailable", "create_engine"]
