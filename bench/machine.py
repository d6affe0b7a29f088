"""What the figures depend on: the machine, its matrix-multiply rate, and the model's
arithmetic, from which the lowest latency this CPU could reach follows."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime

from app.inference.int8.cpu_class import cpu_class
from app.inference.onnx_export.cache import ensure_export
from app.model.files import ModelDescription
from app.settings import available_cores

MATMUL_SIZE = 2048
MATMUL_REPEATS = 5


def describe_machine() -> str:
    return (
        f"Machine: {cpu_model()} (instruction-set class {cpu_class()}), {available_cores()} usable cores; "
        f"Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__}"
    )


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def matmul_gflops(size: int = MATMUL_SIZE) -> float:
    """float32 GFLOP/s of numpy's BLAS on all cores: what dense arithmetic reaches on
    this CPU, the yardstick for how close an engine gets to the hardware."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm-up: BLAS starts its threads and sizes its buffers on the first call
    best = float("inf")
    for _ in range(MATMUL_REPEATS):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def model_flops(model: ModelDescription) -> int:
    """2 x multiply-adds of all convolutions per image, as the exporter counted them."""
    exported = onnx.load(str(ensure_export(model)))
    return int({prop.key: prop.value for prop in exported.metadata_props}["flops"])
