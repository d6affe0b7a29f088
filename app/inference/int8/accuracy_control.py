"""Accuracy control for onnxruntime's int8: the layers that move the counts go back
to fp32, one by one, until int8 agrees with fp32 on the calibration photos.

The convolutions are ranked by the quantization error at their inputs (each activation
and weight quantized as the int8 model does it, on a sample of the calibration inputs,
the squared error normalized per channel): continuous, where box counts on a few photos
tie, and local, where putting one layer back may change nothing at the outputs until
the next one is back too. Then, worst first, layers go back until the project's own
agreement (fp32 boxes matched at IoU 0.5, agreement.py) reaches the pass mark on the
calibration photos, or the model is no longer faster than fp32 (more layers back would
only be slower), or half of the convolutions are back. The layers kept in fp32 from
the start (the output convolutions) are not candidates. The held-out photos stay out
of it: they are the gate's, and a control tuned on them would pass its own exam.
OpenVINO's counterpart is NNCF's quantize_with_accuracy_control
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
from .qdq_layers import layer_of, quantization_error, quantized_inputs, quantized_layers, with_layers_in_fp32


def _onnxruntime_errors() -> tuple[type[Exception], ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "RuntimeException", "NotImplemented", "EPFail")
    return tuple(getattr(state, name) for name in names if hasattr(state, name))


# What a graph the surgery does not know can raise, from the surgery or from onnxruntime:
# the calibration then measures int8 as quantized, and says why.
CONTROL_ERRORS = (ValueError, KeyError, RuntimeError, onnx.checker.ValidationError, *_onnxruntime_errors())
RANKING_INPUTS = 16  # network inputs the ranking measures the quantization error on
MAX_RESTORED_SHARE = 0.5  # of the convolutions: a bound on calibrate's time where the speed check cannot tell


@dataclass
class RestoredLayers:
    """What accuracy control put back in fp32, and the agreement after each."""

    layers: list[str]  # back in fp32, in the order restored
    reached: bool  # the pass mark was reached on the calibration photos
    # Why it stopped short of the mark: "" (it reached it), "budget" (half of the
    # convolutions back) or "no faster than fp32" (more layers back would only be slower).
    stopped: str = ""
    # Per layer restored: {"layer", "calibration_share", "counted_all"}; where not all
    # were counted, the share is an upper bound, already below the pass mark
    # (CalibrationAgreement.share_or_bound).
    steps: list[dict] = field(default_factory=list)
    ranking: list[dict] = field(default_factory=list)  # {"layer", "input_error"}, worst first


def restore_until(
    ranked: Sequence[str],
    agreement: Callable[[list[str]], tuple[float, bool]],
    target: float,
    max_layers: int,
    start: float,
    faster_than_fp32: Callable[[list[str]], bool] = lambda layers: True,
) -> RestoredLayers:
    """Layers back in ranked order until agreement(layers) (the share and whether every
    photo was counted) reaches target; start: the share with none back. Nothing is undone:
    a layer that helps alone may need an earlier one (NNCF's restorer, by contrast, undoes
    a revert that made the drop worse). Stops short when faster_than_fp32(layers) says
    the model with these layers back is no faster than fp32: more would only be slower."""
    layers: list[str] = []
    share = start
    steps = []
    for layer in ranked[:max_layers]:
        if share >= target:
            break
        layers.append(layer)
        share, counted_all = agreement(layers)
        steps.append({"layer": layer, "calibration_share": round(share, 6), "counted_all": counted_all})
        if share < target and not faster_than_fp32(layers):
            return RestoredLayers(layers, False, "no faster than fp32", steps)
    reached = share >= target
    return RestoredLayers(layers, reached, "" if reached else "budget", steps)


class CalibrationAgreement:
    """The share of fp32's boxes a detector matches on the calibration photos."""

    def __init__(self, photos: dict, reference: dict, names: list[str], target: float):
        self._photos, self._reference, self._names = photos, reference, names
        self.target = target

    def photos(self) -> list:
        return [self._photos[name] for name in self._names]

    def share(self, detector, indices: list[int] | None = None) -> float:
        """On the calibration photos, or those of them at these indices (photos())."""
        return self._count(detector, indices, stop_below_mark=False)[0]

    def share_or_bound(self, detector) -> tuple[float, bool]:
        """The share and True; or, once more boxes are lost than the pass mark allows, an
        upper bound already below the mark and False: a hopeless candidate costs a few
        photos, where the decision only needs to know it fails."""
        return self._count(detector, None, stop_below_mark=True)

    def _count(self, detector, indices: list[int] | None, stop_below_mark: bool) -> tuple[float, bool]:
        names = self._names if indices is None else [self._names[index] for index in indices]
        total = sum(len(self._reference[name]) for name in names)
        lost = 0
        for number, name in enumerate(names, start=1):
            found = detector.detect(self._photos[name], DetectOptions())
            lost += len(self._reference[name]) - matched_boxes(self._reference[name], found)
            if stop_below_mark and lost > total * (1 - self.target) and number < len(names):
                return 1 - lost / total, False
        return (1 - lost / total if total else 1.0), True


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
    sample: list[np.ndarray],
    kept_fp32: list[str],
    share_of: Callable[[Path], tuple[float, bool]],
    faster_than_fp32: Callable[[Path], bool],
    start: float,
    target: float,
    target_path: Path,
    threads: int,
) -> RestoredLayers:
    """Accuracy control of the int8 model at qdq_path (quantized from fp32_path).
    sample: network inputs to rank the layers on (RANKING_INPUTS of them); kept_fp32: the
    nodes kept in fp32 from the start; share_of(model path): the share of fp32 boxes it
    matches on the calibration photos (CalibrationAgreement.share_or_bound);
    faster_than_fp32(model path): whether it still runs faster than fp32; start: the share
    of the model as quantized. The last model tried is left at target_path."""
    qdq, fp32 = onnx.load(str(qdq_path)), onnx.load(str(fp32_path))
    errors = input_errors(qdq, fp32, sample, threads)
    kept = {layer_of(name) for name in kept_fp32}
    candidates = [layer for layer in quantized_layers(qdq, convolutions_only=True) if layer not in kept]
    ranked = sorted(candidates, key=lambda layer: -errors.get(layer, 0.0))

    def agreement(layers: list[str]) -> tuple[float, bool]:
        onnx.save(with_layers_in_fp32(qdq, fp32, layers), str(target_path))
        return share_of(target_path)

    budget = max(1, int(len(quantized_layers(qdq, convolutions_only=True)) * MAX_RESTORED_SHARE))
    # Each step wrote its model to target_path: the speed check times that one.
    restored = restore_until(ranked, agreement, target, budget, start, lambda layers: faster_than_fp32(target_path))
    restored.ranking = [{"layer": layer, "input_error": round(errors.get(layer, 0.0), 8)} for layer in ranked]
    return restored


def _session(model: onnx.ModelProto, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
