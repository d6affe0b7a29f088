"""Inference engines behind one interface, chosen from the table in registry.py; each
is imported only when it is chosen, so a machine without an engine's library still
serves with the others."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable

from app.inference.int8 import DEFAULT_INT8_MIN_AGREEMENT
from app.inference.int8.candidates import ServingChoice, serving_plan
from app.inference.int8.cpu_class import cpu_class, cpu_has_bf16
from app.inference.int8.report import NotCalibrated, read_report
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
    """precision int8 or bf16 exists only where the table lists it; min_agreement gates it
    (int8/); auto: the fastest that passed on this CPU (int8/candidates.py)."""
    if precision == "auto":
        return _create_auto_precision(backend, model, threads, device, min_agreement)
    if backend != "auto":
        entry = ENGINES.get(backend)
        if entry is None:
            raise EngineUnavailable(f"unknown backend {backend!r}")
        if precision not in entry.precisions:
            raise EngineUnavailable(f"the {backend} engine has no {precision} precision")
        return _as_set(_function(entry, entry.load)(model, threads, device, precision, min_agreement))
    reasons = []
    for entry, asked in auto_candidates(device, precision):
        try:
            return _as_set(_function(entry, entry.load)(model, threads, asked, precision, min_agreement))
        except EngineUnavailable as exc:
            reasons.append(f"{entry.name}: {exc}")
            if isinstance(exc, DeviceUnavailable) and device == "auto":
                # A GPU image on a machine without its GPU: say why it is not on the GPU.
                log.warning("%s cannot use a GPU: %s; trying the next engine", entry.name, exc)
    raise EngineUnavailable("no engine available (" + "; ".join(reasons) + ")")


def _create_auto_precision(
    backend: str, model: ModelDescription, threads: int, device: str, min_agreement: float
) -> Engine:
    """PRECISION=auto. A GPU serves fp32 as before: the calibration measured this CPU.
    On the CPU, the plan from the calibration report, tried in order; its last step is
    fp32 on BACKEND's own choice, the service as it always was."""
    if device != "cpu":
        engine = _gpu_engine(backend, model, threads, device, min_agreement)
        if engine is not None:
            engine.selection = "fp32: on the GPU (the calibration measures the CPU)"
            return engine
    entry = ENGINES.get(backend)
    if entry is not None and entry.precisions == ("fp32",):
        plan = [ServingChoice(backend, "fp32", f"fp32: the {backend} engine's only precision")]
    else:
        plan = cpu_plan(model, backend, min_agreement)
    passed_over = []
    for step in plan:
        last = step is plan[-1]
        try:
            engine = create_engine(
                step.backend, model, threads, device if last else "cpu", step.precision, min_agreement
            )
        except (EngineUnavailable, NotCalibrated) as exc:
            if last:
                raise
            passed_over.append(f"{step.backend} {step.precision}: {exc}")
            continue
        engine.selection = step.reason + (f" (passed over: {'; '.join(passed_over)})" if passed_over else "")
        return engine
    raise AssertionError("a serving plan ends with fp32")  # pragma: no cover


def cpu_plan(model: ModelDescription, backend: str, min_agreement: float) -> list[ServingChoice]:
    from app.inference.onnx_export.cache import export_paths  # onnx: not in gunicorn's master before it is needed

    try:
        report = read_report(export_paths(model), model.pinned)
    except (NotCalibrated, OSError) as exc:  # an unreadable report, no place for exports
        return [ServingChoice(backend, "fp32", f"fp32: {exc}")]
    return serving_plan(
        None if report is None else report.candidates,
        "" if report is None else report.cpu_class,
        cpu_class(),
        backend,
        min_agreement,
        cpu_has_bf16(),
    )


def _gpu_engine(backend: str, model: ModelDescription, threads: int, device: str, min_agreement: float):
    why_not = []  # each engine's own reason, so the one refusal line names what is missing
    for entry, _ in auto_candidates("cuda", "fp32"):
        if backend not in ("auto", entry.name):
            continue
        try:
            return _function(entry, entry.load)(model, threads, "cuda", "fp32", min_agreement)
        except EngineUnavailable as exc:
            if device == "cuda" and backend != "auto":
                raise
            why_not.append(f"{entry.name}: {exc}")
    if device == "cuda":
        reasons = f" ({'; '.join(why_not)})" if why_not else ""
        raise EngineUnavailable(f"DEVICE=cuda but no engine of BACKEND={backend} could start on a GPU{reasons}")
    return None


def prepare_engine(backend: str, model: ModelDescription, precision: str, min_agreement: float) -> None:
    """Work done once per machine before workers start (gunicorn's master): the ONNX
    export, and the int8 gate, so a refused PRECISION=int8 is one line, not one per
    worker. Whatever cannot be prepared here is left to the workers' own fallback."""
    named = ENGINES.get(backend)
    if precision == "auto" and (named is None or named.precisions != ("fp32",)):
        with contextlib.suppress(ImportError):  # a report CALIBRATION_SHA256 refuses stops the start here, once
            cpu_plan(model, backend, min_agreement)
    precision = "fp32" if precision == "auto" else precision  # the export; workers choose from the report
    for entry in ENGINES.values():
        if backend not in ("auto", entry.name) or entry.prepare is None or precision not in entry.precisions:
            continue
        with contextlib.suppress(ImportError, EngineUnavailable):
            _function(entry, entry.prepare)(model, precision, min_agreement)
        if backend == "auto":  # the first in BACKEND=auto's order that serves it is the one to gate
            return


def _as_set(engine: Engine) -> Engine:
    engine.selection = f"PRECISION={engine.precision} as set"
    return engine


def _function(entry: EngineEntry, reference: str) -> Callable:
    module, name = reference.split(":")
    try:
        return getattr(importlib.import_module(f".{module}", __name__), name)
    except ImportError as exc:  # optional: the other engines serve without it
        raise EngineUnavailable(f"the {entry.name} engine needs the {exc.name} package") from None


__all__ = ["DeviceUnavailable", "Engine", "EngineUnavailable", "create_engine", "prepare_engine"]
