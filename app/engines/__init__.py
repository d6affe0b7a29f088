"""Inference engines behind one interface; each is imported only when it is chosen,
so a machine without an engine's library still serves with the others."""

from __future__ import annotations

from ..model_files import ModelDescription
from .base import Engine, EngineUnavailable

# Fastest first: BACKEND=auto takes the first that loads on this machine.
AUTO_ORDER = ("opencv",)


def create_engine(backend: str, model: ModelDescription, threads: int, device: str = "auto") -> Engine:
    if backend != "auto":
        return _load(backend, model, threads, device)
    reasons = []
    for name in AUTO_ORDER:
        try:
            return _load(name, model, threads, device)
        except EngineUnavailable as exc:
            reasons.append(f"{name}: {exc}")
    raise EngineUnavailable("no engine available (" + "; ".join(reasons) + ")")


def _load(name: str, model: ModelDescription, threads: int, device: str) -> Engine:
    if name == "opencv":
        from .opencv_engine import OpenCVEngine

        return OpenCVEngine(model, threads=threads, device=device)
    raise EngineUnavailable(f"unknown backend {name!r}")


__all__ = ["Engine", "EngineUnavailable", "create_engine"]
