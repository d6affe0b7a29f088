"""Inference engines behind one interface; each is imported only when it is chosen,
so a machine without an engine's library still serves with the others."""

from __future__ import annotations

from ..model_files import ModelDescription
from .base import Engine, EngineUnavailable

# BACKEND=auto: fastest first, each with the device it must have to be the fastest.
# darknet wins only on a GPU; on a CPU OpenCV's DNN is several times faster.
AUTO_ORDER = (("darknet", "cuda"), ("opencv", "cpu"))


def create_engine(backend: str, model: ModelDescription, threads: int, device: str = "auto") -> Engine:
    if backend != "auto":
        return _load(backend, model, threads, device)
    reasons = []
    for name, needs in AUTO_ORDER:
        if device not in ("auto", needs):
            continue
        try:
            return _load(name, model, threads, needs)
        except EngineUnavailable as exc:
            reasons.append(f"{name}: {exc}")
    raise EngineUnavailable("no engine available (" + "; ".join(reasons) + ")")


def _load(name: str, model: ModelDescription, threads: int, device: str) -> Engine:
    if name == "opencv":
        from .opencv_engine import OpenCVEngine

        return OpenCVEngine(model, threads=threads, device=device)
    if name == "darknet":
        from .darknet_engine import DarknetEngine

        return DarknetEngine(model, threads=threads, device=device)
    raise EngineUnavailable(f"unknown backend {name!r}")


__all__ = ["Engine", "EngineUnavailable", "create_engine"]
