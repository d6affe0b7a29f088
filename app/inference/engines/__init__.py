"""Inference engines behind one interface, chosen from the table in registry.py; each
is imported only when it is chosen, so a machine without an engine's library still
serves with the others."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from app.inference.int8 import DEFAULT_INT8_MIN_AGREEMENT
from app.inference.int8.candidates import ServingChoice, serving_plan
from app.inference.int8.cpu_class import cpu_class, cpu_has_bf16
from app.inference.int8.report import NotCalibrated, read_report
from app.model.files import ModelDescription

from .base import DeviceUnavailable, Engine, EngineUnavailable
from .registry import ENGINES, EngineEntry, auto_candidates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One choice of the ordered list create_engine tries: the engines that can serve it
    (in BACKEND=auto's order, each with the device to ask it for), in one precision, and
    why it is chosen, which the engine carries (/model's `selection`). `refusal` turns the
    reasons its engines gave (and the last one's error) into what is said when none
    starts: the error that stops the start where the step is final, else why it was
    passed over."""

    candidates: tuple[tuple[EngineEntry, str], ...]
    precision: str
    reason: str
    refusal: Callable[[list[str], Exception | None], Exception]
    final: bool = True
    passed_over_as: str = ""  # how /model names it when a later step serves instead ("": not named)
    # What lets the next engine try: a missing library or device always; a model not
    # calibrated only within PRECISION=auto's plan (PRECISION=int8 as set says it at once).
    passes_on: tuple[type[Exception], ...] = (EngineUnavailable,)


def create_engine(
    backend: str,
    model: ModelDescription,
    threads: int,
    device: str = "auto",
    precision: str = "fp32",
    min_agreement: float = DEFAULT_INT8_MIN_AGREEMENT,
) -> Engine:
    """The first engine of engine_steps() that starts; precision int8 or bf16 only where
    the table lists it, gated by min_agreement (int8/); auto: the fastest that passed on
    this CPU (int8/candidates.py)."""
    passed_over: list[str] = []
    would_not_start: dict[tuple[str, str, str], Exception] = {}  # not tried twice in one choice
    for step in engine_steps(backend, model, device, precision, min_agreement):
        reasons: list[str] = []
        failure: Exception | None = None
        for entry, asked in step.candidates:
            tried = (entry.name, asked, step.precision)
            try:
                if tried in would_not_start:
                    raise would_not_start[tried]
                engine = _function(entry, entry.load)(model, threads, asked, step.precision, min_agreement)
            except (EngineUnavailable, NotCalibrated) as exc:
                if not isinstance(exc, step.passes_on):
                    raise
                reasons.append(f"{entry.name}: {exc}")
                failure = exc
                if isinstance(exc, DeviceUnavailable) and device == "auto" and tried not in would_not_start:
                    # A GPU image on a machine without its GPU: say why it is not on the GPU.
                    log.warning("%s cannot use a GPU: %s; trying the next engine", entry.name, exc)
                would_not_start[tried] = exc
                continue
            engine.selection = step.reason + (f" (passed over: {'; '.join(passed_over)})" if passed_over else "")
            return engine
        refused = step.refusal(reasons, failure)
        if step.final:
            raise refused
        if step.passed_over_as:
            passed_over.append(f"{step.passed_over_as}: {refused}")
    raise AssertionError("the last step is final")  # pragma: no cover


def engine_steps(
    backend: str, model: ModelDescription, device: str, precision: str, min_agreement: float
) -> list[Step]:
    """What to try, in order, from BACKEND, PRECISION, DEVICE, the calibration report and
    this CPU's class."""
    if precision != "auto":
        return [_as_set(backend, device, precision)]
    steps = []
    if device != "cpu":  # a GPU serves fp32: the calibration measured this CPU
        gpu = tuple((entry, "cuda") for entry, _ in auto_candidates("cuda", "fp32") if backend in ("auto", entry.name))
        why = "fp32: on the GPU (the calibration measures the CPU)"
        # DEVICE=auto without a GPU goes on to the CPU's plan; DEVICE=cuda stops here.
        steps.append(Step(gpu, "fp32", why, _gpu_refusal(backend), final=device == "cuda"))
    entry = ENGINES.get(backend)
    if entry is not None and entry.precisions == ("fp32",):
        plan = [ServingChoice(backend, "fp32", f"fp32: the {backend} engine's only precision")]
    else:
        plan = cpu_plan(model, backend, min_agreement)
    for number, choice in enumerate(plan, 1):
        last = number == len(plan)  # the service as it always was: BACKEND's own choice, any device
        step = _as_set(choice.backend, device if last else "cpu", choice.precision)
        named = f"{choice.backend} {choice.precision}"
        passes_on = (EngineUnavailable, NotCalibrated)
        steps.append(Step(step.candidates, choice.precision, choice.reason, step.refusal, last, named, passes_on))
    return steps


def _as_set(backend: str, device: str, precision: str) -> Step:
    """PRECISION as set, on BACKEND (auto: the first that starts, in the table's order)."""
    reason = f"PRECISION={precision} as set"
    if backend == "auto":

        def nothing_started(reasons, failure):
            return EngineUnavailable("no engine available (" + "; ".join(reasons) + ")")

        return Step(tuple(auto_candidates(device, precision)), precision, reason, nothing_started)
    entry = ENGINES.get(backend)
    if entry is None:
        return Step((), precision, reason, lambda reasons, failure: EngineUnavailable(f"unknown backend {backend!r}"))
    if precision not in entry.precisions:
        no_such = EngineUnavailable(f"the {backend} engine has no {precision} precision")
        return Step((), precision, reason, lambda reasons, failure: no_such)
    return Step(((entry, device),), precision, reason, lambda reasons, failure: failure)


def _gpu_refusal(backend: str):
    def refusal(reasons: list[str], failure) -> Exception:
        if backend != "auto" and failure is not None:
            return failure  # the one engine named: its own reason
        said = f" ({'; '.join(reasons)})" if reasons else ""
        return EngineUnavailable(f"DEVICE=cuda but no engine of BACKEND={backend} could start on a GPU{said}")

    return refusal


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


def _function(entry: EngineEntry, reference: str) -> Callable:
    module, name = reference.split(":")
    try:
        return getattr(importlib.import_module(f".{module}", __name__), name)
    except ImportError as exc:  # optional: the other engines serve without it
        raise EngineUnavailable(f"the {entry.name} engine needs the {exc.name} package") from None


__all__ = ["DeviceUnavailable", "Engine", "EngineUnavailable", "create_engine", "prepare_engine"]
