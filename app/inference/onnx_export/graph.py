"""ONNX nodes for each darknet layer type, with darknet's shape arithmetic.

Every layer's last node and output tensor carry the layer's name (`conv_12`,
`yolo_16`, ...), so a graph viewer or an error points back at the .cfg.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import helper, numpy_helper

from app.model.darknet_cfg import Section

from .weights import WeightsCursor

LEAKY_SLOPE = 0.1  # darknet's leaky activation
# AlexeyAB's normalize_cpu (the trainer users have): (x - mean) / sqrt(variance + 1e-5).
BATCH_NORM_EPSILON = 1e-5
ACTIVATIONS = ("linear", "leaky", "relu", "logistic", "mish", "swish")


class UnsupportedLayer(ValueError):
    """The .cfg uses a layer or option the exporter does not translate."""


@dataclass(frozen=True)
class Shape:
    channels: int
    height: int
    width: int


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
    filters = section.get_int("filters", 1)
    size = section.get_int("size", 1)
    stride = section.get_int("stride", 1)
    stride_x, stride_y = section.get_int("stride_x", stride), section.get_int("stride_y", stride)
    padding = size // 2 if section.get_int("pad", 0) else section.get_int("padding", 0)
    groups = section.get_int("groups", 1)
    if shape.channels % groups or filters % groups:
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
    out = Shape(
        filters,
        (shape.height + 2 * padding - size) // stride_y + 1,
        (shape.width + 2 * padding - size) // stride_x + 1,
    )
    if out.height <= 0 or out.width <= 0:
        raise UnsupportedLayer(f"{where(section, index)}: the input {shape.height}x{shape.width} is too small")
    graph.flops += 2 * filters * (shape.channels // groups) * size * size * out.height * out.width
    conv_name = name if activation == "linear" else f"{name}/conv"
    graph.add(
        "Conv",
        [source, graph.constant(f"{name}.weight", kernel), graph.constant(f"{name}.bias", biases.astype(np.float32))],
        conv_name,
        kernel_shape=[size, size],
        strides=[stride_y, stride_x],
        pads=[padding, padding, padding, padding],
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
    stride = section.get_int("stride", 1)
    stride_x, stride_y = section.get_int("stride_x", stride), section.get_int("stride_y", stride)
    size = section.get_int("size", stride)
    padding = section.get_int("padding", size - 1)
    # darknet starts the window padding//2 before the edge and lets the rest hang over
    # the far side: asymmetric padding, which is how stride-1 pools keep the size.
    near, far = padding // 2, padding - padding // 2
    out = Shape(
        shape.channels, (shape.height + padding - size) // stride_y + 1, (shape.width + padding - size) // stride_x + 1
    )
    name = graph.add(
        "MaxPool",
        [source],
        f"maxpool_{index}",
        kernel_shape=[size, size],
        strides=[stride_y, stride_x],
        pads=[near, near, far, far],
    )
    return name, out


def route(graph: Graph, section: Section, index: int, outputs: list[tuple[str, Shape]]) -> tuple[str, Shape]:
    sources = [
        _layer_reference(section, index, item, len(outputs)) for item in section.options.get("layers", "").split(",")
    ]
    groups, group_id = section.get_int("groups", 1), section.get_int("group_id", 0)
    name = f"route_{index}"
    parts, channels = [], 0
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
            channels += part
        else:
            channels += shape.channels
        parts.append(tensor)
    first = outputs[sources[0]][1]
    node = graph.add("Concat", parts, name, axis=1) if len(parts) > 1 else graph.add("Identity", parts, name)
    return node, Shape(channels, first.height, first.width)


def shortcut(
    graph: Graph, section: Section, index: int, source: str, shape: Shape, outputs: list[tuple[str, Shape]]
) -> tuple[str, Shape]:
    _refuse_options(section, index, {"weights_type": "none"})
    name = f"shortcut_{index}"
    total = source
    for number, item in enumerate(section.options.get("from", "").split(",")):
        other, other_shape = outputs[_layer_reference(section, index, item, len(outputs))]
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
    return resized, Shape(shape.channels, shape.height * stride, shape.width * stride)


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


def _layer_reference(section: Section, index: int, item: str, count: int) -> int:
    try:
        value = int(item)
    except ValueError:
        raise UnsupportedLayer(f"{where(section, index)}: layer reference {item!r} is not a number") from None
    target = index + value if value < 0 else value
    if not 0 <= target < count:
        raise UnsupportedLayer(f"{where(section, index)}: layer reference {item} is outside 0..{count - 1}")
    return target


def _refuse_options(section: Section, index: int, neutral: dict[str, str]) -> None:
    for key, value in neutral.items():
        if section.options.get(key, value) != value:
            raise UnsupportedLayer(f"{where(section, index)}: {key}={section.options[key]} is not supported")
