"""The project's own darknet -> ONNX exporter: the .cfg and .weights in, an ONNX model
out whose outputs are OpenCV DNN's rows, one tensor per [yolo] layer.

Input `image`: float32 [batch, 3, height, width], RGB in 0..1 (as preprocess.py
makes it). Output `yolo_<layer>`: [batch, rows, 5 + classes].
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from app.model.darknet_cfg import CfgError, Section, Shape, input_shape
from app.model.files import weights_mismatch

from . import graph as layers
from .graph import Graph, UnsupportedLayer
from .weights import WeightsCursor, WeightsError, read_weights

EXPORTER_VERSION = "1"  # part of the cache key: a change here rebuilds cached exports
OPSET = 17
INPUT_NAME = "image"
PASS_THROUGH = ("dropout",)  # identity at inference


def export_darknet(
    sections: list[Section] | tuple[Section, ...], weights_path: Path, weights: bytes | None = None
) -> onnx.ModelProto:
    """Raises UnsupportedLayer for what the exporter does not cover, WeightsError when
    the weights do not fit the cfg (too few floats, or more than it reads). weights: the
    file's bytes, where they were read (and checked) already."""
    shape = input_shape(sections)
    channels, height, width = shape.channels, shape.height, shape.width
    _, values = read_weights(weights_path, weights)
    weights = WeightsCursor(values, weights_path.name)
    graph = Graph()
    outputs: list[tuple[str, Shape]] = []  # per darknet layer: tensor and shape
    detections: list[tuple[str, int]] = []
    tensor = INPUT_NAME
    for index, section in enumerate(sections[1:]):
        kind = section.type
        try:
            layers.refuse_weight_reading_options(section, index)
            if kind in ("convolutional", "conv"):
                tensor, shape = layers.convolutional(graph, section, index, tensor, shape, weights)
            elif kind in ("maxpool", "max"):
                tensor, shape = layers.maxpool(graph, section, index, tensor, shape)
            elif kind == "route":
                tensor, shape = layers.route(graph, section, index, outputs)
            elif kind == "shortcut":
                tensor, shape = layers.shortcut(graph, section, index, tensor, shape, outputs)
            elif kind == "upsample":
                tensor, shape = layers.upsample(graph, section, index, tensor, shape)
            elif kind == "yolo":
                detections.append(layers.yolo(graph, section, index, tensor, shape, (width, height)))
            elif kind not in PASS_THROUGH:
                raise UnsupportedLayer(f"{layers.where(section, index)}: the ONNX exporter does not support [{kind}]")
        except CfgError as exc:  # "line 157: [route] ...": load_model_description refuses these first
            raise UnsupportedLayer(str(exc)) from None
        outputs.append((tensor, shape))
    if not detections:
        raise UnsupportedLayer("no [yolo] layer: the ONNX exporter covers YOLOv3/v4 detection networks")
    if weights.remaining:
        raise WeightsError(weights_mismatch(weights_path.name, len(values), "the cfg", weights.used))

    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "darknet",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", channels, height, width])],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", None, row]) for name, row in detections],
            graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="darknet-service onnx_export",
        producer_version=EXPORTER_VERSION,
    )
    helper.set_model_props(model, {"flops": str(graph.flops)})
    onnx.checker.check_model(model)
    return model


__all__ = ["EXPORTER_VERSION", "INPUT_NAME", "UnsupportedLayer", "WeightsError", "export_darknet"]
