"""Engine latency in process: each engine built as the service builds it and timed on
its own, one after the other (interleaved, each would evict the other's caches)."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.inference.engines import Engine, EngineUnavailable, create_engine
from app.inference.engines.onnx_files import prepare_onnx_model
from app.inference.engines.registry import ENGINES
from app.inference.int8 import DEFAULT_INT8_MIN_AGREEMENT
from app.inference.int8.calibration import CalibrationError, CalibrationOptions, calibrate
from app.inference.int8.report import AgreementReport, Int8NotCalibrated, NotCalibrated
from app.inference.onnx_export.cache import export_paths
from app.model.files import ModelDescription

from .report import ms, progress, table, target, times
from .timing import Timing, median, p90, time_calls

THRESHOLD = 0.25  # the service's default
HTTP = "http"
FP32 = "onnxruntime fp32"
INT8 = "onnxruntime int8"


@dataclass(frozen=True)
class EngineSpec:
    backend: str
    precision: str = "fp32"
    library: str | None = None  # a libdarknet.so, for darknet

    @property
    def kind(self) -> str:
        return f"{self.backend} {self.precision}" if len(ENGINES[self.backend].precisions) > 1 else self.backend

    @property
    def name(self) -> str:
        return f"{self.kind} {self.library}" if self.library else self.kind


@dataclass(frozen=True)
class LatencyRow:
    label: str
    kind: str  # what the target ratios look rows up by
    samples: list[float]

    @property
    def median(self) -> float:
        return median(self.samples)

    @property
    def p90(self) -> float:
        return p90(self.samples)


def engine_specs(darknet_libraries: list[str], int8: bool = True) -> list[EngineSpec]:
    """Every engine of the registry in every precision it serves; darknet once per
    library given (none: not timed)."""
    return [
        EngineSpec(entry.name, precision, library)
        for entry in ENGINES.values()
        for library in (darknet_libraries if entry.name == "darknet" else [None])
        for precision in entry.precisions
        if int8 or precision != "int8"
    ]


def time_engines(
    specs: list[EngineSpec], model: ModelDescription, image: np.ndarray, threads: int, timing: Timing
) -> tuple[list[LatencyRow], list[str]]:
    """A row per engine that loads, a note per engine that does not."""
    rows, notes = [], []
    for spec in specs:
        progress(f"timing {spec.name}")
        try:
            engine = _create(spec, model, threads)
        except (EngineUnavailable, NotCalibrated) as exc:
            notes.append(f"- {spec.name}: not timed: {exc}")
            continue
        samples = time_calls(functools.partial(engine.predict, image, THRESHOLD), timing)
        rows.append(LatencyRow(_label(spec, engine), spec.kind, samples))
    return rows, notes


def _create(spec: EngineSpec, model: ModelDescription, threads: int) -> Engine:
    variables = {"LIBDARKNET_PATH": spec.library} if spec.library else {}
    with _environment(**variables), _c_stdout_to_stderr():
        return create_engine(spec.backend, model, threads=threads, device="cpu", precision=spec.precision)


@contextmanager
def _c_stdout_to_stderr() -> Iterator[None]:
    """darknet prints its layer table with printf: keep stdout the Markdown report."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # what C buffered goes to stderr too
        os.dup2(saved, 1)
        os.close(saved)


def _label(spec: EngineSpec, engine: Engine) -> str:
    if spec.library is None:
        return spec.kind
    return f"darknet ({engine.library.flavour}, {spec.library})"


@contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """The library path (and the OMP_NUM_THREADS darknet sets) stay out of the
    environment the gunicorn servers inherit later."""
    saved = dict(os.environ)
    os.environ.update(variables)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def prepare_int8(model: ModelDescription, photo_dir: Path, threads: int) -> str:
    """A note on the int8 model's agreement report, calibrating first when the service's
    gate would not take the existing one here (none, unreadable, not stamped with these
    files, or measured on another CPU class); create_engine then applies the gate."""
    paths = export_paths(model)
    origin = f"existing calibration ({paths.int8_report.name})"
    try:
        # Every check of the gate but the pass mark: a failing report is shown, not redone.
        prepare_onnx_model(model, "int8", 0.0)
        report = AgreementReport.from_json(paths.int8_report.read_text())
    except EngineUnavailable as exc:
        return f"- int8: no ONNX export: {exc}"
    except (Int8NotCalibrated, OSError, ValueError, KeyError, TypeError):
        progress(f"calibrating int8 on {photo_dir}")
        try:
            report, _, _ = calibrate(model, photo_dir, CalibrationOptions(threads=threads))
        except CalibrationError as exc:
            return f"- int8: calibration failed: {exc}"
        origin = f"calibrated now on {photo_dir.name}/"
    verdict = "passes" if report.passes(DEFAULT_INT8_MIN_AGREEMENT) else "fails"
    schemes = ", ".join(
        f"{result['scheme']} {result['matched_share']:.1%} {result['forward_ms']:.1f} ms" for result in report.schemes
    )
    return (
        f"- int8: {origin}; scheme {report.scheme} on this {report.cpu_class} CPU ({report.scheme_reason}); "
        f"matched {report.matched_share:.1%} of {report.fp32_boxes} fp32 boxes on "
        f"{len(report.held_out)} held-out photos: {verdict} the {DEFAULT_INT8_MIN_AGREEMENT:.0%} gate. "
        f"Schemes measured (held-out agreement, forward pass): {schemes}"
    )


def latency_table(rows: list[LatencyRow], floor_ms: float) -> str:
    fastest = min((row.median for row in rows if row.kind != HTTP), default=float("nan"))
    return table(
        ("engine", "median ms", "p90 ms", "x fastest", "x floor"),
        [
            (row.label, ms(row.median), ms(row.p90), times(row.median / fastest), times(row.median / floor_ms))
            for row in rows
        ],
    )


def floor_lines(flops: int, gflops: float) -> str:
    return (
        f"FLOPs per image: {flops / 1e9:.2f} GFLOP (2 x multiply-adds of the convolutions); "
        f"float32 matmul: {gflops:.1f} GFLOP/s; floor = FLOPs / matmul rate = {flops / gflops / 1e6:.1f} ms"
    )


def engine_targets(rows: list[LatencyRow], floor_ms: float) -> list[str]:
    """The issue's targets; darknet's is against its fastest library."""
    medians: dict[str, float] = {}
    for row in rows:
        medians[row.kind] = min(row.median, medians.get(row.kind, float("inf")))

    def ratio(numerator: str, denominator: str) -> float | None:
        if numerator not in medians or denominator not in medians:
            return None
        return medians[numerator] / medians[denominator]

    return [
        target("onnxruntime fp32 / opencv", ratio(FP32, "opencv"), 1.0),
        target("onnxruntime fp32 / darknet (fastest)", ratio(FP32, "darknet"), 0.3),
        target("onnxruntime fp32 x floor", medians[FP32] / floor_ms if FP32 in medians else None, 1.2),
        target("onnxruntime int8 / fp32", ratio(INT8, FP32), 0.6),
        target("HTTP /invocations / onnxruntime fp32 engine", ratio(HTTP, FP32), 1.3),
    ]
