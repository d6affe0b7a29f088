"""Inference engines behind one interface, chosen from the table in registry.py; each
is imported only when it is chosen, so a machine without an engine's library still
serves with the others."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable

from app.inference.int8 import DEFAULT_INT8_MIN_AGREEMENT
from app.model.files import ModelDescription

from .base import DeviceUnavailable, Engine, EngineUnavailable
from .registry import ENGINES, EngineEntry, auto_candidates

log = logging.getLogger(__name__)


def create_engine(
    backend: str,
    model: ModelDescription,
    threads: int,
    device: str = "auto",
    precision: str = "fp32",
    min_agreement: float = DEFAULT_INT8_MIN_AGREEMENT,
) -> Engine:
    """precision int8 exists only where the table lists it; min_agreement gates it (int8/)."""
    if backend != "auto":
        entry = ENGINES.get(backend)
        if entry is None:
            raise EngineUnavailable(f"unknown backend {backend!r}")
        if precision not in entry.precisions:
            raise EngineUnavailable(f"the {backend} engine has no {precision} precision")
        return _function(entry, entry.load)(model, threads, device, precision, min_agreement)
    reasons = []
    for entry, asked in auto_candidates(device, precision):
        try:
            return _function(entry, entry.load)(model, threads, asked, precision, min_agreement)
        except EngineUnavailable as exc:
            reasons.append(f"{entry.name}: {exc}")
            if isinstance(exc, DeviceUnavailable) and device == "auto":
                # A GPU image on a machine without its GPU: say why it is not on the GPU.
                log.warning("%s cannot use a GPU: %s; trying the next engine", entry.name, exc)
    raise EngineUnavailable("no engine available (" + "; ".join(reasons) + ")")


def prepare_engine(backend: str, model: ModelDescription, precision: str, min_agreement: float) -> None:
    """Work done once per machine before workers start (gunicorn's master): the ONNX
    export, and the int8 gate, so a refused PRECISION=int8 is one line, not one per
    worker. Whatever cannot be prepared here is left to the workers' own fallback."""
    for entry in ENGINES.values():
        if backend not in ("auto", entry.name) or entry.prepare is None or precision not in entry.precisions:
            continue
        with contextlib.suppress(ImportError, EngineUnavailable):
            _function(entry, entry.prepare)(model, precision, min_agreement)


def _function(entry: EngineEntry, reference: str) -> Callable:
    module, name = reference.split(":")
    try:
        return getattr(importlib.import_module(f".{module}", __name__), name)
    except ImportError as exc:  # optional: the other engines serve without it
        raise EngineUnavailable(f"the {entry.name} engine needs the {exc.name} package") from None


__all__ = ["DeviceUnavailable", "Engine", "EngineUnavailable", "create_engine", "prepare_engine"]
