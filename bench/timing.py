"""Wall-clock samples and their summary, shared by every section."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    warmup: int
    runs: int


def time_calls(call: Callable[[], object], timing: Timing) -> list[float]:
    """Milliseconds of each timed call; the warm-up calls are not timed because first
    calls allocate buffers and fill caches that every later call finds ready."""
    for _ in range(timing.warmup):
        call()
    samples = []
    for _ in range(timing.runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def p90(samples: list[float]) -> float:
    """Nearest rank: a value that was measured, not one interpolated between two."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
