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
from app.inference.int8.accuracy_control import MAX_RESTORED_SHARE, CalibrationAgreement, RestoredLayers
from app.inference.onnx_export.cache import ExportPaths, export_stamp
from app.model.files import ModelDescription
from app.vision.detection import DEFAULT_THRESHOLD
from app.vision.preprocess import fit_to_network

log = logging.getLogger(__name__)
NNCF_RANKING_PHOTOS = 16  # calibration photos NNCF ranks the operations on


@dataclass
class OpenVinoCandidates:
    detectors: dict[str, Detector]  # "openvino fp32" -> its detector
    notes: list[str]  # candidates not measured, and why
    int8_model: Path | None  # NNCF's model in the work directory, stamped
    restored: RestoredLayers | None = None  # what NNCF's accuracy control put back in fp32


def openvino_candidates(
    model: ModelDescription,
    fp32_path: Path,
    blobs: Iterable[np.ndarray],
    keep_fp32: list[str],
    threads: int,
    workdir: Path,
    detector: Callable,
    agreement: CalibrationAgreement | None = None,
) -> OpenVinoCandidates:
    """detector(engine) wraps an engine the way the calibration compares them; with
    agreement, NNCF's int8 is made under accuracy control on it."""
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
    samples, target = list(blobs), workdir / "openvino-int8.xml"
    try:
        if agreement is not None:
            try:
                found.int8_model, found.restored = quantize_with_nncf_control(
                    model, fp32_path, samples, keep_fp32, target, agreement, detector
                )
            except ImportError:
                raise
            except Exception as exc:  # NNCF's and OpenVINO's failures are many: int8 as quantized
                found.notes.append(f"openvino int8 accuracy control: not run: {_first_line(exc)}")
        if found.int8_model is None:
            found.int8_model = quantize_with_nncf(model, fp32_path, samples, keep_fp32, target)
        found.detectors["openvino int8"] = detector(OpenVinoEngine(model, found.int8_model, threads, "int8"))
        if found.restored is not None:
            found.restored.reached = agreement.share(found.detectors["openvino int8"]) >= agreement.target
            found.restored.stopped = "" if found.restored.reached else "NNCF's restorer"
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

    samples = list(blobs)
    started = time.perf_counter()
    with _quiet_nncf():
        quantized = nncf.quantize(
            _read(fp32_path), nncf.Dataset(samples), subset_size=len(samples), ignored_scope=_ignored(keep_fp32)
        )
    _save(quantized, model, target)
    log.info("NNCF quantized %s on %d inputs in %.1f s", fp32_path.name, len(samples), time.perf_counter() - started)
    return target


def quantize_with_nncf_control(
    model: ModelDescription,
    fp32_path: Path,
    blobs: Iterable[np.ndarray],
    keep_fp32: list[str],
    target: Path,
    agreement: CalibrationAgreement,
    detector: Callable,
) -> tuple[Path, RestoredLayers]:
    """NNCF's quantize_with_accuracy_control, its metric the project's agreement with
    onnxruntime fp32 on the calibration photos (counted in full: NNCF compares drops
    between steps): when int8 as quantized misses the pass mark, it ranks the quantized
    operations and puts them back in fp32 until the drop is within 1 - pass mark, for
    at most as many of its iterations as half the convolutions (an iteration may revert
    a group of operations)."""
    import nncf

    samples = list(blobs)
    network = _read(fp32_path)
    convolutions = sum(op.get_type_name() == "Convolution" for op in network.get_ops())
    images = agreement.photos()

    from app.inference.engines.openvino_engine import OpenVinoEngine

    def validate(compiled, indices) -> tuple[float, None]:
        engine = OpenVinoEngine.over_compiled(compiled, model, "int8")
        return agreement.share(detector(engine), [int(index) for index in indices]), None

    started = time.perf_counter()
    with _quiet_nncf():
        quantized = nncf.quantize_with_accuracy_control(
            network,
            nncf.Dataset(samples),
            nncf.Dataset(range(len(images)), lambda index: fit_to_network(images[index], model.network)[0]),
            validate,
            max_drop=1 - agreement.target,
            subset_size=len(samples),
            ignored_scope=_ignored(keep_fp32),
            advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
                max_num_iterations=max(1, int(convolutions * MAX_RESTORED_SHARE)),
                ranking_subset_size=NNCF_RANKING_PHOTOS,
            ),
        )
    _save(quantized, model, target)
    layers = restored_convolutions(quantized, keep_fp32)
    log.info("NNCF accuracy control: %d layers back in fp32 in %.1f s", len(layers), time.perf_counter() - started)
    # Whether it reached the mark is measured with the others, below: not twice.
    return target, RestoredLayers(layers, False)


def restored_convolutions(quantized, keep_fp32: list[str]) -> list[str]:
    """Layers whose convolution reads fp32 weights (a constant of a float type, where
    NNCF's int8 reads int8 constants through a Convert and a Multiply), other than those
    kept in fp32 from the start: what accuracy control put back. Not the activation
    input: NNCF quantizes a pooling's input, and the convolution after it reads the
    pooling's output."""
    kept = {name.split("/")[0] for name in keep_fp32}
    layers = []
    for op in quantized.get_ops():
        if op.get_type_name() != "Convolution":
            continue
        layer = op.get_friendly_name().split("/")[0]
        weights = op.input(1).get_source_output().get_node()
        if weights.get_type_name() == "Constant" and weights.get_element_type().is_real() and layer not in kept:
            layers.append(layer)
    return sorted(layers, key=_layer_number)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _layer_number(layer: str) -> int:
    number = layer.rsplit("_", 1)[-1]
    return int(number) if number.isdigit() else 0


@contextlib.contextmanager
def _quiet_nncf():
    """A line per op NNCF leaves alone is noise in the report; its progress bars go to
    stderr: stdout is the calibration's (or a benchmark's) report."""
    import nncf

    nncf.set_log_level(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _read(path: Path):
    import openvino

    return openvino.Core().read_model(str(path))


def _ignored(keep_fp32: list[str]):
    import nncf

    layers = sorted({name.split("/")[0] for name in keep_fp32})
    # OpenVINO names a convolution "conv_15/WithoutBiases" and its bias "conv_15": a layer's every op.
    return nncf.IgnoredScope(patterns=[rf"^{re.escape(layer)}([/.].*)?$" for layer in layers], validate=False)


def _save(quantized, model: ModelDescription, target: Path) -> None:
    import openvino

    from app.inference.engines.openvino_engine import stamp_ir

    openvino.save_model(stamp_ir(quantized, export_stamp(model)), str(target), compress_to_fp16=False)


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
