"""ONNX nodes for each darknet layer type; the shape arithmetic is darknet_cfg's, which
the model's weights check follows too.

Every layer's last node and output tensor carry the layer's name (`conv_12`,
`yolo_16`, ...), so a graph viewer or an error points back at the .cfg.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import helper, numpy_helper

from app.model.darknet_cfg import (
    Section,
    Shape,
    convolution_output,
    convolution_window,
    layer_references,
    maxpool_output,
    maxpool_window,
    route_output,
    upsample_output,
)

from .weights import WeightsCursor

LEAKY_SLOPE = 0.1  # darknet's leaky activation
# AlexeyAB's normalize_cpu (the trainer users have): (x - mean) / sqrt(variance + 1e-5).
BATCH_NORM_EPSILON = 1e-5
ACTIVATIONS = ("linear", "leaky", "relu", "logistic", "mish", "swish")


class UnsupportedLayer(ValueError):
    """The .cfg uses a layer or option the exporter does not translate."""


@dataclass
class Graph:
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    flops: int = 0  # multiply-adds x 2 of the convolutions, per image

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def add(self, op: str, inputs: list[str], name: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name


def where(section: Section, index: int) -> str:
    return f"layer {index} [{section.type}] (cfg line {section.line})"


def convolutional(
    graph: Graph, section: Section, index: int, source: str, shape: Shape, weights: WeightsCursor
) -> tuple[str, Shape]:
    _refuse_options(section, index, {"antialiasing": "0", "dilation": "1", "binary": "0", "xnor": "0"})
    out, window = convolution_output(section, shape), convolution_window(section)
    filters, size = out.channels, window.size
    groups = section.get_int("groups", 1)
    if groups < 1 or shape.channels % groups or filters % groups:
        raise UnsupportedLayer(f"{where(section, index)}: groups={groups} does not divide the channels")
    activation = section.options.get("activation", "logistic")
    if activation not in ACTIVATIONS:
        raise UnsupportedLayer(f"{where(section, index)}: activation={activation} is not supported")

    name = f"conv_{index}"
    biases = weights.take(filters, name)
    if section.get_int("batch_normalize", 0):
        scales, mean, variance = (weights.take(filters, name) for _ in range(3))
    kernel = weights.take(filters * shape.channels // groups * size * size, name)
    kernel = kernel.reshape(filters, shape.channels // groups, size, size).astype(np.float32)
    if section.get_int("batch_normalize", 0):
        # Fold the batch norm into the convolution: one Conv node at inference.
        factor = scales / np.sqrt(variance + BATCH_NORM_EPSILON)
        kernel = kernel * factor[:, None, None, None]
        biases = biases - mean * factor
    graph.flops += 2 * filters * (shape.channels // groups) * size * size * out.height * out.width
    conv_name = name if activation == "linear" else f"{name}/conv"
    graph.add(
        "Conv",
        [source, graph.constant(f"{name}.weight", kernel), graph.constant(f"{name}.bias", biases.astype(np.float32))],
        conv_name,
        kernel_shape=[size, size],
        strides=[window.stride_y, window.stride_x],
        pads=[window.padding] * 4,
        group=groups,
    )
    return activate(graph, conv_name, activation, name), out


def activate(graph: Graph, source: str, activation: str, name: str) -> str:
    if activation == "linear":
        return source if source == name else graph.add("Identity", [source], name)
    if activation == "leaky":
        return graph.add("LeakyRelu", [source], name, alpha=LEAKY_SLOPE)
    if activation == "relu":
        return graph.add("Relu", [source], name)
    if activation == "logistic":
        return graph.add("Sigmoid", [source], name)
    if activation == "swish":
        return graph.add("Mul", [source, graph.add("Sigmoid", [source], f"{name}/sigmoid")], name)
    if activation == "mish":
        softplus = graph.add("Softplus", [source], f"{name}/softplus")
        return graph.add("Mul", [source, graph.add("Tanh", [softplus], f"{name}/tanh")], name)
    raise UnsupportedLayer(f"activation {activation}")


def maxpool(graph: Graph, section: Section, index: int, source: str, shape: Shape) -> tuple[str, Shape]:
    _refuse_options(section, index, {"maxpool_depth": "0", "antialiasing": "0"})
    out, window = maxpool_output(section, shape), maxpool_window(section)
    # darknet starts the window padding//2 before the edge and lets the rest hang over
    # the far side: asymmetric padding, which is how stride-1 pools keep the size.
    near, far = window.padding // 2, window.padding - window.padding // 2
    name = graph.add(
        "MaxPool",
        [source],
        f"maxpool_{index}",
        kernel_shape=[window.size, window.size],
        strides=[window.stride_y, window.stride_x],
        pads=[near, near, far, far],
    )
    return name, out


def route(graph: Graph, section: Section, index: int, outputs: list[tuple[str, Shape]]) -> tuple[str, Shape]:
    sources = layer_references(section, index, "layers")
    out = route_output(section, [outputs[source][1] for source in sources])
    groups, group_id = section.get_int("groups", 1), section.get_int("group_id", 0)
    name = f"route_{index}"
    parts = []
    for number, source in enumerate(sources):
        tensor, shape = outputs[source]
        if shape.height != outputs[sources[0]][1].height or shape.width != outputs[sources[0]][1].width:
            raise UnsupportedLayer(f"{where(section, index)}: layers {sources} have different sizes")
        if groups > 1:
            # darknet's grouped route keeps the group_id-th slice of each input's channels.
            part = shape.channels // groups
            starts, ends = [group_id * part], [(group_id + 1) * part]
            tensor = graph.add(
                "Slice",
                [
                    tensor,
                    graph.constant(f"{name}.{number}.starts", np.array(starts, np.int64)),
                    graph.constant(f"{name}.{number}.ends", np.array(ends, np.int64)),
                    graph.constant(f"{name}.{number}.axes", np.array([1], np.int64)),
                ],
                f"{name}/slice{number}",
            )
        parts.append(tensor)
    node = graph.add("Concat", parts, name, axis=1) if len(parts) > 1 else graph.add("Identity", parts, name)
    return node, out


def shortcut(
    graph: Graph, section: Section, index: int, source: str, shape: Shape, outputs: list[tuple[str, Shape]]
) -> tuple[str, Shape]:
    _refuse_options(section, index, {"weights_type": "none"})
    name = f"shortcut_{index}"
    total = source
    for number, reference in enumerate(layer_references(section, index, "from")):
        other, other_shape = outputs[reference]
        if other_shape != shape:
            raise UnsupportedLayer(f"{where(section, index)}: adds {other_shape} to {shape}; only equal shapes")
        total = graph.add("Add", [total, other], f"{name}/add{number}")
    activation = section.options.get("activation", "linear")
    if activation not in ACTIVATIONS:
        raise UnsupportedLayer(f"{where(section, index)}: activation={activation} is not supported")
    return activate(graph, total, activation, name), shape


def upsample(graph: Graph, section: Section, index: int, source: str, shape: Shape) -> tuple[str, Shape]:
    stride = section.get_int("stride", 2)
    if stride < 1:
        raise UnsupportedLayer(f"{where(section, index)}: stride={stride} (downsampling) is not supported")
    name = f"upsample_{index}"
    scales = graph.constant(f"{name}.scales", np.array([1, 1, stride, stride], np.float32))
    # darknet copies input pixel (x // stride, y // stride): nearest, floor, asymmetric.
    out = upsample_output(section, shape)
    resized = graph.add(
        "Resize",
        [source, "", scales],
        name if section.get_float("scale", 1.0) == 1.0 else f"{name}/resize",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    if resized != name:
        scale = graph.constant(f"{name}.scale", np.array(section.get_float("scale", 1.0), np.float32))
        resized = graph.add("Mul", [resized, scale], name)
    return resized, out


def yolo(
    graph: Graph, section: Section, index: int, source: str, shape: Shape, network: tuple[int, int]
) -> tuple[str, int]:
    """Decode in the graph to OpenCV's rows: cx, cy, w, h (0..1 of the network input),
    objectness, then objectness x class probability for each class."""
    classes = section.get_int("classes", 20)
    anchors = np.array([float(v) for v in section.options.get("anchors", "").split(",") if v], np.float32)
    anchors = anchors.reshape(-1, 2)
    masks = section.options.get("mask", "")
    mask = [int(v) for v in masks.split(",") if v] if masks else list(range(len(anchors)))
    if max(mask, default=-1) >= len(anchors):
        raise UnsupportedLayer(f"{where(section, index)}: mask {mask} refers past the {len(anchors)} anchors")
    boxes_per_cell, row = len(mask), 5 + classes
    if shape.channels != boxes_per_cell * row:
        raise UnsupportedLayer(
            f"{where(section, index)}: the layer before has {shape.channels} filters, "
            f"the yolo layer needs {boxes_per_cell * row} (({classes} classes + 5) x {boxes_per_cell} masks)"
        )
    scale = section.get_float("scale_x_y", 1.0)
    new_coords = section.get_int("new_coords", 0) != 0
    name = f"yolo_{index}"
    height, width = shape.height, shape.width
    cells = height * width * boxes_per_cell

    def const(suffix, array):
        return graph.constant(f"{name}.{suffix}", np.asarray(array))

    # [N, A*row, H, W] -> [N, H, W, A, row] -> [N, H*W*A, row]: OpenCV's row order.
    grid = graph.add(
        "Reshape",
        [source, const("grid_shape", np.array([-1, boxes_per_cell, row, height, width], np.int64))],
        f"{name}/split_anchors",
    )
    grid = graph.add("Transpose", [grid], f"{name}/cells_last", perm=[0, 3, 4, 1, 2])
    rows = graph.add("Reshape", [grid, const("rows_shape", np.array([-1, cells, row], np.int64))], f"{name}/rows")
    split = const("split", np.array([2, 2, 1, classes], np.int64))
    xy, wh, objectness, probabilities = (f"{name}/{part}" for part in ("xy", "wh", "objectness", "classes"))
    graph.nodes.append(
        helper.make_node("Split", [rows, split], [xy, wh, objectness, probabilities], name=f"{name}/split", axis=2)
    )

    if not new_coords:  # new_coords cfgs put the logistic in the convolution before
        xy = graph.add("Sigmoid", [xy], f"{name}/xy_logistic")
        objectness = graph.add("Sigmoid", [objectness], f"{name}/objectness_logistic")
        probabilities = graph.add("Sigmoid", [probabilities], f"{name}/classes_logistic")
    ys, xs, _ = np.meshgrid(np.arange(height), np.arange(width), np.arange(boxes_per_cell), indexing="ij")
    offsets = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    size = np.array([width, height], np.float32)
    # x = (cell + logistic(tx) * scale_x_y - (scale_x_y - 1) / 2) / grid width, as darknet.
    xy = graph.add("Mul", [xy, const("xy_scale", scale / size)], f"{name}/xy_scaled")
    xy = graph.add("Add", [xy, const("xy_offset", ((offsets - (scale - 1) / 2) / size)[None])], f"{name}/xy_decoded")
    anchor_sizes = np.tile(anchors[mask] / np.array(network, np.float32), (height * width, 1))[None]
    if new_coords:
        wh = graph.add("Mul", [wh, wh], f"{name}/wh_squared")
        wh = graph.add("Mul", [wh, const("anchors", 4 * anchor_sizes)], f"{name}/wh_decoded")
    else:
        wh = graph.add("Exp", [wh], f"{name}/wh_exp")
        wh = graph.add("Mul", [wh, const("anchors", anchor_sizes)], f"{name}/wh_decoded")
    scores = graph.add("Mul", [probabilities, objectness], f"{name}/scores")
    graph.add("Concat", [xy, wh, objectness, scores], name, axis=2)
    return name, row


# Options by which darknet reads a layer's weights otherwise than in file order; the
# exporter would read them wrong, so it refuses (BACKEND=auto then takes OpenCV).
WEIGHT_READING_OPTIONS = {"dontload": "0", "dontloadscales": "0", "numload": "0"}


def refuse_weight_reading_options(section: Section, index: int) -> None:
    if "share_index" in section.options:
        raise UnsupportedLayer(f"{where(section, index)}: share_index (another layer's weights) is not supported")
    _refuse_options(section, index, WEIGHT_READING_OPTIONS)


def _refuse_options(section: Section, index: int, neutral: dict[str, str]) -> None:
    for key, value in neutral.items():
        if section.options.get(key, value) != value:
            raise UnsupportedLayer(f"{where(section, index)}: {key}={section.options[key]} is not supported")
