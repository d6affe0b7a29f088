"""A model whose int8 loses counts at one named layer, and only there.

From a real darknet model: one output channel of a convolution is multiplied by a
large factor (its batch-norm scale and shift: leaky ReLU is positively homogeneous, so
the channel's activations grow by exactly that factor) and the next convolution's
weights for that channel are divided by it. In fp32 the network computes the same
boxes; int8 quantizes each activation tensor with one scale, which the grown channel
now sets, and every other channel collapses to a few levels. onnxruntime quantizes the
grown tensor twice, before the layer's activation and before the next convolution:
putting both layers back in fp32 undoes it, and accuracy control should find them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx

from app.inference.onnx_export.weights import read_weights, write_weights
from app.model.darknet_cfg import parse_cfg

GROWTH = 1000.0


def make_sensitive(source: Path, target: Path, export: Path, layer: int, channels: int = 4) -> Path:
    """Copy the model in source (a .cfg, .weights and .names) to target with the input
    of darknet layer `layer` (a convolution fed by convolution layer - 1 alone) grown
    GROWTH times in a few channels. export: the source model's fp32 ONNX export, for the
    convolutions' shapes. Returns target."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.suffix in (".cfg", ".names", ".data"):
            shutil.copy(path, target / path.name)
    (weights_path,) = source.glob("*.weights")
    (cfg_path,) = source.glob("*.cfg")
    header, values = read_weights(weights_path)
    values = values.copy()
    sections = parse_cfg(cfg_path.read_text())[1:]  # [net] is not a layer
    shapes = {init.name: tuple(init.dims) for init in onnx.load(str(export)).graph.initializer}
    offsets, offset = {}, 0
    for index, section in enumerate(sections):
        if section.type not in ("convolutional", "conv"):
            continue
        filters, inputs, size, _ = shapes[f"conv_{index}.weight"]
        batch_norm = section.get_int("batch_normalize", 0) == 1
        offsets[index] = (offset, filters, inputs, size, batch_norm)
        offset += filters * (4 if batch_norm else 1) + filters * inputs * size * size
    start, filters, _, _, batch_norm = offsets[layer - 1]
    if not batch_norm or sections[layer].type != "convolutional":
        raise ValueError(f"layer {layer - 1} must be a batch-normalized convolution feeding convolution {layer}")
    grown = np.arange(channels)
    values[start + grown] *= GROWTH  # biases (beta) first, then scales (gamma)
    values[start + filters + grown] *= GROWTH
    start, next_filters, inputs, size, next_norm = offsets[layer]
    weights_start = start + next_filters * (4 if next_norm else 1)
    weights = values[weights_start : weights_start + next_filters * inputs * size * size]
    weights.reshape(next_filters, inputs, size, size)[:, grown] /= GROWTH
    write_weights(target / weights_path.name, values, header)
    return target
