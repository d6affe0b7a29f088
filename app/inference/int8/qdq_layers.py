"""Layers of onnxruntime's QDQ int8 model put back in fp32, without quantizing again.

quantize_static keeps every node's name and every activation's name: a quantized
layer (all nodes named conv_13 or conv_13/...) reads its inputs through
DequantizeLinear nodes. Putting the layer back in fp32 is reading, at each of those
inputs, what the fp32 model's node of the same name reads there (the activation
before its QuantizeLinear, the fp32 weights and bias). The quantization of every other
layer stays as calibrated, so accuracy control (accuracy_control.py) can try layer after
layer in seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper


def layer_of(node_name: str) -> str:
    """darknet's layer of an exported node: conv_13/leaky -> conv_13."""
    return node_name.split("/")[0]


def quantized_layers(qdq: onnx.ModelProto, convolutions_only: bool = False) -> list[str]:
    """Layers with at least one input read through a DequantizeLinear, in graph order;
    convolutions_only: those whose convolution does (a pooling, route or upsampling put
    back in fp32 still hands a quantized tensor to the convolution after it)."""
    dequantized = {out for node in qdq.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    layers: list[str] = []
    for node in qdq.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or (convolutions_only and node.op_type != "Conv"):
            continue
        if any(name in dequantized for name in node.input) and layer_of(node.name) not in layers:
            layers.append(layer_of(node.name))
    return layers


@dataclass(frozen=True)
class QuantizedInput:
    """One input of a layer's node read through a DequantizeLinear."""

    layer: str
    fp32_name: str  # what the fp32 node reads there: an activation or an initializer
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int  # of a per-channel scale
    int8_values: np.ndarray | None  # a quantized initializer's values; None for an activation


def quantized_inputs(qdq: onnx.ModelProto, fp32: onnx.ModelProto) -> list[QuantizedInput]:
    """Every input a quantized layer reads through a DequantizeLinear, with its scale:
    for an activation, the tensor quantized (the QuantizeLinear's input); for weights,
    the int8 initializer."""
    initializers = {init.name: numpy_helper.to_array(init) for init in qdq.graph.initializer}
    producers = {out: node for node in qdq.graph.node for out in node.output}
    original = {node.name: node for node in fp32.graph.node}
    found = []
    for node in qdq.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.name not in original:
            continue
        for index, name in enumerate(node.input):
            dequantize = producers.get(name)
            if dequantize is None or dequantize.op_type != "DequantizeLinear":
                continue
            values, scale = initializers.get(dequantize.input[0]), initializers.get(dequantize.input[1])
            if scale is None:
                continue
            # No zero point: 0, of the quantized type (uint8 where nothing says).
            zero_name = dequantize.input[2] if len(dequantize.input) > 2 else ""
            zero = initializers.get(zero_name, np.zeros_like(scale, values.dtype if values is not None else np.uint8))
            axis = next((attr.i for attr in dequantize.attribute if attr.name == "axis"), 1)
            found.append(
                QuantizedInput(layer_of(node.name), original[node.name].input[index], scale, zero, axis, values)
            )
    return found


def quantization_error(values: np.ndarray, point: QuantizedInput) -> float:
    """Squared error of these fp32 values quantized and dequantized as the int8 model
    does at this input (activations), or of its int8 weights, normalized per channel and
    averaged over channels: the next layer's weights scale each channel, so a channel of
    small values drowned by another's range matters as much as the big one."""
    shape = [1] * values.ndim
    if point.scale.ndim:  # per channel
        shape[point.axis] = -1
    scale, zero = point.scale.reshape(shape), point.zero_point.reshape(shape).astype(np.float64)
    if point.int8_values is not None:
        restored = (point.int8_values.astype(np.float64) - zero) * scale
    else:
        limits = np.iinfo(point.zero_point.dtype)
        levels = np.clip(np.round(values / scale) + zero, limits.min, limits.max)
        restored = (levels - zero) * scale
    # Weights: their per-channel axis (output channels); activations: NCHW's channels.
    channel = (point.axis if point.scale.ndim else 0) if point.int8_values is not None else min(1, values.ndim - 1)
    others = tuple(axis for axis in range(values.ndim) if axis != channel)
    power = np.mean(values.astype(np.float64) ** 2, axis=others)
    error = np.mean((restored - values) ** 2, axis=others)
    return float(np.mean(error[power > 0] / power[power > 0])) if np.any(power > 0) else 0.0


def with_layers_in_fp32(qdq: onnx.ModelProto, fp32: onnx.ModelProto, layers: Iterable[str]) -> onnx.ModelProto:
    """A copy of qdq where every node of these layers reads fp32's inputs; the Q/DQ
    nodes and int8 initializers nothing reads any more are dropped."""
    wanted = set(layers)
    unknown = wanted - set(quantized_layers(qdq))
    if unknown:
        raise ValueError(f"not quantized in this model: {', '.join(sorted(unknown))}")
    original = {node.name: node for node in fp32.graph.node}
    fp32_initializers = {init.name: init for init in fp32.graph.initializer}
    result = onnx.ModelProto()
    result.CopyFrom(qdq)
    present = {init.name for init in result.graph.initializer}
    produced = {name: node.name for node in result.graph.node for name in node.output}
    fp32_produced = {name: node.name for node in fp32.graph.node for name in node.output}
    for node in result.graph.node:
        if layer_of(node.name) not in wanted or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        source = original.get(node.name)
        if source is None or len(source.input) != len(node.input):
            raise ValueError(f"{node.name}: not the same node in the fp32 model")
        for index, name in enumerate(source.input):
            if name not in fp32_initializers:  # an activation: the one before its QuantizeLinear
                # ...when the int8 model computes it as fp32 does. onnxruntime drops a Relu
                # after a quantized convolution (the quantization's clamp stands in for it),
                # and the tensor of that name is then the convolution's, before the Relu.
                if produced.get(name) == fp32_produced.get(name):
                    node.input[index] = name
                continue
            # A bias's DequantizeLinear writes the fp32 name itself (conv_13.bias): the
            # fp32 values come in under a name of their own.
            own = f"{name}.fp32" if name in produced else name
            if own not in present:
                copy = onnx.TensorProto()
                copy.CopyFrom(fp32_initializers[name])
                copy.name = own
                result.graph.initializer.append(copy)
                present.add(own)
            node.input[index] = own
    return _without_unread(result)


def _without_unread(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop Q/DQ nodes whose outputs nothing reads, until none is left; then the
    initializers no node reads."""
    graph = model.graph
    outputs = {output.name for output in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        unread = [
            node
            for node in graph.node
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(out in read for out in node.output)
        ]
        if not unread:
            break
        for node in unread:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    for init in [init for init in graph.initializer if init.name not in read]:
        graph.initializer.remove(init)
    return model
