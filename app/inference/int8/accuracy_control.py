"""Accuracy control for onnxruntime's int8: the layers that move the counts go back
to fp32, one by one, until int8 agrees with fp32 on the calibration photos.

The layers are ranked by the quantization error at their inputs (normalized squared
error of each activation and weight quantized as the int8 model does, on a sample of
the calibration inputs: continuous, where box counts on a few photos tie, and local,
where putting one layer back may change nothing at the outputs until the next one is
back too); then, worst first, layers go back until the project's own agreement (fp32 boxes matched
at IoU 0.5, agreement.py) reaches the pass mark on the calibration photos, or half of
the quantized layers are back, past which int8 is no faster than fp32. The held-out
photos stay out of it: they are the gate's, and a control tuned on them would pass its
own exam. OpenVINO's counterpart is NNCF's quantize_with_accuracy_control
(openvino_calibration.py), given the same agreement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from app.inference.onnx_export import INPUT_NAME
from app.vision.detection import DetectOptions

from .agreement import matched_boxes
from .qdq_layers import (
    computing_layers,
    quantization_error,
    quantized_inputs,
    quantized_layers,
    with_layers_in_fp32,
)

RANKING_INPUTS = 16  # network inputs the ranking measures the quantization error on
MAX_RESTORED_SHARE = 0.5  # of the quantized layers: beyond, int8 is no faster than fp32


@dataclass
class RestoredLayers:
    """What accuracy control put back in fp32, and the agreement after each."""

    layers: list[str]  # back in fp32, in the order restored
    reached: bool  # the pass mark was reached on the calibration photos
    # Per layer restored: {"layer", "calibration_share"}; a share below the pass mark is
    # an upper bound (CalibrationAgreement stops counting once the mark is out of reach).
    steps: list[dict] = field(default_factory=list)
    ranking: list[dict] = field(default_factory=list)  # {"layer", "input_error"}, worst first


def restore_until(
    ranked: Sequence[str], agreement: Callable[[list[str]], float], target: float, max_layers: int
) -> RestoredLayers:
    """Layers back in ranked order until agreement(layers) >= target. Nothing is
    undone: a later layer may need an earlier one (as NNCF's restorer does)."""
    layers: list[str] = []
    share = agreement(layers)
    steps = []
    for layer in ranked[:max_layers]:
        if share >= target:
            break
        layers.append(layer)
        share = agreement(layers)
        steps.append({"layer": layer, "calibration_share": round(share, 6)})
    return RestoredLayers(layers, share >= target, steps)


class CalibrationAgreement:
    """The share of fp32's boxes a detector matches on the calibration photos. Counting
    stops once more boxes are lost than the pass mark allows: the share returned is then
    an upper bound, already below the mark, and a hopeless candidate costs a few photos."""

    def __init__(self, photos: dict, reference: dict, names: list[str], target: float):
        self._photos, self._reference, self._names = photos, reference, names
        self.target = target

    def photos(self) -> list:
        return [self._photos[name] for name in self._names]

    def share(self, detector, indices: list[int] | None = None) -> float:
        """On the calibration photos, or those of them at these indices (photos())."""
        names = self._names if indices is None else [self._names[index] for index in indices]
        total = sum(len(self._reference[name]) for name in names)
        lost = 0
        for name in names:
            found = detector.detect(self._photos[name], DetectOptions())
            lost += len(self._reference[name]) - matched_boxes(self._reference[name], found)
            if lost > total * (1 - self.target):
                break
        return 1 - lost / total if total else 1.0


def input_errors(qdq: onnx.ModelProto, fp32: onnx.ModelProto, blobs: list[np.ndarray], threads: int) -> dict:
    """Per quantized layer, the largest quantization error among its inputs: each
    activation as the int8 model quantizes it (fp32's own values, quantized with the
    calibrated scale, on these network inputs), each weight as it was quantized. Measured
    where it is made, not at the outputs: a channel that sets a tensor's scale for all the
    others spoils every layer reading that tensor, and only the tensor shows it."""
    points = quantized_inputs(qdq, fp32)
    activations = sorted({point.fp32_name for point in points if point.int8_values is None} - {INPUT_NAME})
    probe = onnx.ModelProto()
    probe.CopyFrom(fp32)
    known = {output.name for output in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in activations if name not in known)
    names = [output.name for output in probe.graph.output]
    session = _session(probe, threads)
    sums = [0.0] * len(points)
    for blob in blobs:  # one input at a time: a big network's activations are hundreds of MB
        values = dict(zip(names, session.run(None, {INPUT_NAME: blob}), strict=True)) | {INPUT_NAME: blob}
        for index, point in enumerate(points):
            if point.int8_values is None:
                sums[index] += quantization_error(values[point.fp32_name], point) / len(blobs)
    weights = {init.name: numpy_helper.to_array(init) for init in fp32.graph.initializer}
    errors: dict[str, float] = {}
    for point, activation_error in zip(points, sums, strict=True):
        if point.int8_values is None:
            error = activation_error
        else:
            error = quantization_error(weights[point.fp32_name], point) if point.fp32_name in weights else 0.0
        errors[point.layer] = max(errors.get(point.layer, 0.0), error)
    return errors


def control_onnxruntime(
    qdq_path: Path,
    fp32_path: Path,
    blobs: list[np.ndarray],
    share_of: Callable[[Path], float],
    target: float,
    target_path: Path,
    threads: int,
) -> RestoredLayers:
    """Accuracy control of the int8 model at qdq_path (quantized from fp32_path).
    share_of(model path): the share of fp32 boxes it matches on the calibration photos
    (CalibrationAgreement). The last model tried is left at target_path."""
    qdq, fp32 = onnx.load(str(qdq_path)), onnx.load(str(fp32_path))
    sample = blobs[:: max(1, len(blobs) // RANKING_INPUTS)][:RANKING_INPUTS]
    errors = input_errors(qdq, fp32, sample, threads)
    # Layers that compute (convolutions): a pooling, route or upsampling back in fp32
    # still hands a quantized tensor to the convolution after it.
    candidates = [layer for layer in quantized_layers(qdq) if layer in computing_layers(qdq)]
    ranked = sorted(candidates, key=lambda layer: -errors.get(layer, 0.0))

    def agreement(layers: list[str]) -> float:
        onnx.save(with_layers_in_fp32(qdq, fp32, layers), str(target_path))
        return share_of(target_path)

    restored = restore_until(ranked, agreement, target, max(1, int(len(candidates) * MAX_RESTORED_SHARE)))
    restored.ranking = [{"layer": layer, "input_error": round(errors.get(layer, 0.0), 8)} for layer in ranked]
    return restored


def _session(model: onnx.ModelProto, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
