"""The OpenVINO candidates `python -m app calibrate` measures beside onnxruntime's int8:
f32, bf16 where the CPU computes it, and int8 from NNCF's post-training quantization
on the same calibration inputs, with the same layers kept in fp32. NNCF is optional
(requirements-calibrate.txt); without it, or without openvino, the candidates that
cannot be made are named in a note and the others are measured."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.inference.detector import Detector
from app.inference.engines.base import EngineUnavailable
from app.inference.onnx_export.cache import ExportPaths, export_stamp
from app.model.files import ModelDescription
from app.vision.detection import DEFAULT_THRESHOLD

log = logging.getLogger(__name__)


@dataclass
class OpenVinoCandidates:
    detectors: dict[str, Detector]  # "openvino fp32" -> its detector
    notes: list[str]  # candidates not measured, and why
    int8_model: Path | None  # NNCF's model in the work directory, stamped


def openvino_candidates(
    model: ModelDescription,
    fp32_path: Path,
    blobs: Iterable[np.ndarray],
    keep_fp32: list[str],
    threads: int,
    workdir: Path,
    detector: Callable,
) -> OpenVinoCandidates:
    """detector(engine) wraps an engine the way the calibration compares them."""
    try:
        from app.inference.engines.openvino_engine import OpenVinoEngine
    except ImportError as exc:
        return OpenVinoCandidates({}, [f"openvino: not measured, the {exc.name} package is not installed"], None)
    found = OpenVinoCandidates({}, [], None)
    for precision in ("fp32", "bf16"):
        try:
            found.detectors[f"openvino {precision}"] = detector(OpenVinoEngine(model, fp32_path, threads, precision))
        except EngineUnavailable as exc:
            found.notes.append(f"openvino {precision}: not measured: {exc}")
    try:
        found.int8_model = quantize_with_nncf(model, fp32_path, blobs, keep_fp32, workdir / "openvino-int8.xml")
        found.detectors["openvino int8"] = detector(OpenVinoEngine(model, found.int8_model, threads, "int8"))
    except ImportError as exc:
        found.notes.append(
            f"openvino int8: not measured, the {exc.name} package is not installed "
            "(.venv/bin/pip install --require-hashes -r locks/requirements-calibrate.txt)"
        )
    return found


def quantize_with_nncf(
    model: ModelDescription, fp32_path: Path, blobs: Iterable[np.ndarray], keep_fp32: list[str], target: Path
) -> Path:
    """NNCF's post-training quantization of the export in OpenVINO's format (int8
    weights and activations where its kernels take them); the convolutions feeding the
    [yolo] layers and the decoding stay fp32, as for onnxruntime's int8."""
    import nncf
    import openvino

    from app.inference.engines.openvino_engine import stamp_ir

    nncf.set_log_level(logging.WARNING)  # a line per op it leaves alone is noise in the report
    samples = list(blobs)
    layers = sorted({name.split("/")[0] for name in keep_fp32})
    # OpenVINO names a convolution "conv_15/WithoutBiases" and its bias "conv_15": a layer's every op.
    patterns = [rf"^{re.escape(layer)}([/.].*)?$" for layer in layers]
    started = time.perf_counter()
    # Its progress bars go to stderr: stdout is the calibration's (or a benchmark's) report.
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(
            openvino.Core().read_model(str(fp32_path)),
            nncf.Dataset(samples),
            subset_size=len(samples),
            ignored_scope=nncf.IgnoredScope(patterns=patterns, validate=False),
        )
    openvino.save_model(stamp_ir(quantized, export_stamp(model)), str(target), compress_to_fp16=False)
    log.info("NNCF quantized %s on %d inputs in %.1f s", fp32_path.name, len(samples), time.perf_counter() - started)
    return target


def install_int8_model(made: Path, paths: ExportPaths) -> None:
    """Beside the export, under its key: the weights (.bin) first, then the graph that names them."""
    os.replace(made.with_suffix(".bin"), paths.openvino_int8.with_suffix(".bin"))
    os.replace(made, paths.openvino_int8)


def alternating_ms(detectors: dict[str, Detector], images: list[np.ndarray], rounds: int) -> dict[str, float]:
    """Median whole-photo forward pass of each, timed in turns (A, B, C, A, B, C...): on a
    machine shared with others a slow minute then slows every candidate alike, and the
    ratios hold where one-after-the-other timings would not."""
    for detector in detectors.values():  # the first call allocates buffers
        detector.engine.predict(images[0], DEFAULT_THRESHOLD)
    samples: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(rounds):
        for image in images:
            for name, detector in detectors.items():
                started = time.perf_counter()
                detector.engine.predict(image, DEFAULT_THRESHOLD)
                samples[name].append(time.perf_counter() - started)
    return {name: float(np.median(times)) * 1000 for name, times in samples.items()}
