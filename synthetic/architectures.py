"""darknet .cfg files of the YOLO families, written from their published structure,
with randomly initialised weights in darknet's format.

Tests export them and compare with OpenCV DNN; the benchmark runs the production
architecture (YOLOv3 at 832, 6 classes) without shipping anyone's trained weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.inference.onnx_export.weights import write_weights
from app.model.darknet_cfg import parse_cfg

V3_ANCHORS = "10,13, 16,30, 33,23, 30,61, 62,45, 59,119, 116,90, 156,198, 373,326"
V4_ANCHORS = "12,16, 19,36, 40,28, 36,75, 76,55, 72,146, 142,110, 192,243, 459,401"
TINY_ANCHORS = "10,14, 23,27, 37,58, 81,82, 135,169, 344,319"


class CfgWriter:
    """Appends layers and returns their darknet index; references come out relative
    (-3) or absolute (36) as in the published cfgs."""

    def __init__(self, size: int, classes: int, width: float = 1.0):
        self.classes = classes
        self.width = width  # scales every convolution's filters: the same layers, fewer weights
        self.blocks = [f"[net]\nbatch=1\nsubdivisions=1\nwidth={size}\nheight={size}\nchannels=3"]

    @property
    def last(self) -> int:
        return len(self.blocks) - 2

    def add(self, kind: str, **options) -> int:
        lines = [f"[{kind}]"] + [f"{key}={value}" for key, value in options.items()]
        self.blocks.append("\n".join(lines))
        return self.last

    def conv(self, filters, size=1, stride=1, activation="leaky", **extra) -> int:
        return self.add(
            "convolutional",
            batch_normalize=1,
            filters=max(1, round(filters * self.width)),
            size=size,
            stride=stride,
            pad=1,
            activation=activation,
            **extra,
        )

    def route(self, *layers: int, **extra) -> int:
        here = self.last + 1
        return self.add(
            "route", layers=",".join(str(layer - here if layer >= here - 8 else layer) for layer in layers), **extra
        )

    def shortcut(self, source: int, activation="linear") -> int:
        return self.add("shortcut", **{"from": source - (self.last + 1)}, activation=activation)

    def yolo(self, mask: str, anchors: str, activation="linear", **extra) -> int:
        self.add("convolutional", size=1, stride=1, pad=1, filters=3 * (self.classes + 5), activation=activation)
        return self.add(
            "yolo", mask=mask, anchors=anchors, classes=self.classes, num=len(anchors.split(",")) // 2, **extra
        )

    def text(self) -> str:
        return "\n\n".join(self.blocks) + "\n"


def yolov3(size=416, classes=80, width=1.0) -> str:
    cfg = CfgWriter(size, classes, width)
    cfg.conv(32, 3)
    routes = []
    for filters, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        cfg.conv(filters, 3, 2)
        for _ in range(blocks):
            start = cfg.last
            cfg.conv(filters // 2, 1)
            cfg.conv(filters, 3)
            cfg.shortcut(start)
        routes.append(cfg.last)
    for filters, mask, lateral in ((512, "6,7,8", None), (256, "3,4,5", routes[3]), (128, "0,1,2", routes[2])):
        if lateral is not None:
            cfg.route(cfg.last - 3)
            cfg.conv(filters, 1)
            cfg.add("upsample", stride=2)
            cfg.route(cfg.last, lateral)
        for _ in range(3):
            cfg.conv(filters, 1)
            cfg.conv(filters * 2, 3)
        cfg.yolo(mask, V3_ANCHORS)
    return cfg.text()


def yolov3_tiny(size=416, classes=80, activation="leaky", width=1.0) -> str:
    cfg = CfgWriter(size, classes, width)
    for filters in (16, 32, 64, 128, 256):
        cfg.conv(filters, 3, activation=activation)
        cfg.add("maxpool", size=2, stride=2)
    lateral = cfg.last - 1
    cfg.conv(512, 3, activation=activation)
    cfg.add("maxpool", size=2, stride=1)  # stride 1: keeps the size, asymmetric padding
    cfg.conv(1024, 3, activation=activation)
    cfg.conv(256, 1, activation=activation)
    cfg.conv(512, 3, activation=activation)
    cfg.yolo("3,4,5", TINY_ANCHORS)
    cfg.route(cfg.last - 3)
    cfg.conv(128, 1, activation=activation)
    cfg.add("upsample", stride=2)
    cfg.route(cfg.last, lateral)
    cfg.conv(256, 3, activation=activation)
    cfg.yolo("0,1,2", TINY_ANCHORS)
    return cfg.text()


def _csp_stage(cfg: CfgWriter, filters: int, blocks: int, activation: str, first: bool) -> int:
    cfg.conv(filters, 3, 2, activation)
    half = filters if first else filters // 2
    split = cfg.conv(half, 1, activation=activation)
    cfg.route(split - 1)
    cfg.conv(half, 1, activation=activation)
    for _ in range(blocks):
        start = cfg.last
        cfg.conv(filters // 2 if first else half, 1, activation=activation)
        cfg.conv(half, 3, activation=activation)
        cfg.shortcut(start, activation="linear")
    cfg.conv(half, 1, activation=activation)
    cfg.route(cfg.last, split)
    return cfg.conv(filters, 1, activation=activation)


def _spp(cfg: CfgWriter) -> None:
    source = cfg.last
    pools = []
    for size in (5, 9, 13):
        if pools:
            cfg.route(source)
        pools.append(cfg.add("maxpool", stride=1, size=size))
    cfg.route(pools[2], pools[1], pools[0], source)


def yolov4(size=416, classes=80, width=1.0) -> str:
    cfg = CfgWriter(size, classes, width)
    cfg.conv(32, 3, activation="mish")
    stages = [
        _csp_stage(cfg, filters, blocks, "mish", first=index == 0)
        for index, (filters, blocks) in enumerate(((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)))
    ]
    cfg.conv(512, 1)
    cfg.conv(1024, 3)
    cfg.conv(512, 1)
    _spp(cfg)
    cfg.conv(512, 1)
    cfg.conv(1024, 3)
    heads = [cfg.conv(512, 1)]
    for filters, lateral in ((256, stages[3]), (128, stages[2])):
        cfg.conv(filters, 1)
        cfg.add("upsample", stride=2)
        cfg.route(lateral)
        cfg.conv(filters, 1)
        cfg.route(cfg.last, cfg.last - 2)
        for _ in range(2):
            cfg.conv(filters, 1)
            cfg.conv(filters * 2, 3)
        heads.append(cfg.conv(filters, 1))
    cfg.conv(256, 3)
    cfg.yolo("0,1,2", V4_ANCHORS, scale_x_y=1.2)
    for filters, scale, head in ((256, 1.1, heads[1]), (512, 1.05, heads[0])):
        cfg.route(heads[2])
        cfg.conv(filters, 3, 2)
        cfg.route(cfg.last, head)
        for _ in range(2):
            cfg.conv(filters, 1)
            cfg.conv(filters * 2, 3)
        heads[2] = cfg.conv(filters, 1)
        cfg.conv(filters * 2, 3)
        cfg.yolo("3,4,5" if filters == 256 else "6,7,8", V4_ANCHORS, scale_x_y=scale)
    return cfg.text()


def yolov4_tiny(size=416, classes=80, width=1.0) -> str:
    cfg = CfgWriter(size, classes, width)
    cfg.conv(32, 3, 2)
    cfg.conv(64, 3, 2)
    laterals = []
    for filters in (64, 128, 256):
        start = cfg.conv(filters, 3)
        cfg.route(start, groups=2, group_id=1)  # the second half of the channels
        first = cfg.conv(filters // 2, 3)
        cfg.conv(filters // 2, 3)
        cfg.route(cfg.last, first)
        laterals.append(cfg.conv(filters, 1))
        cfg.route(start, cfg.last)
        cfg.add("maxpool", size=2, stride=2)
    cfg.conv(512, 3)
    cfg.conv(256, 1)
    cfg.conv(512, 3)
    cfg.yolo("3,4,5", TINY_ANCHORS, scale_x_y=1.05)
    cfg.route(cfg.last - 3)
    cfg.conv(128, 1)
    cfg.add("upsample", stride=2)
    cfg.route(cfg.last, laterals[2])
    cfg.conv(256, 3)
    cfg.yolo("1,2,3", TINY_ANCHORS, scale_x_y=1.05)
    return cfg.text()


def yolov4_csp(size=416, classes=80, activation="mish", width=1.0) -> str:
    """Scaled-YOLOv4 (csp): new_coords, scale_x_y 2, logistic output convolutions."""
    cfg = CfgWriter(size, classes, width)
    cfg.conv(32, 3, activation=activation)
    stages = [
        _csp_stage(cfg, filters, blocks, activation, first=False)
        for filters, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))
    ]
    split = cfg.conv(512, 1, activation=activation)  # SPP-CSP
    cfg.route(split - 1)
    cfg.conv(512, 1, activation=activation)
    cfg.conv(512, 3, activation=activation)
    cfg.conv(512, 1, activation=activation)
    _spp(cfg)
    cfg.conv(512, 1, activation=activation)
    cfg.conv(512, 3, activation=activation)
    cfg.route(cfg.last, split)
    heads = [cfg.conv(512, 1, activation=activation)]
    for filters, lateral in ((256, stages[3]), (128, stages[2])):
        cfg.conv(filters, 1, activation=activation)
        cfg.add("upsample", stride=2)
        cfg.route(lateral)
        cfg.conv(filters, 1, activation=activation)
        cfg.route(cfg.last, cfg.last - 2)
        cfg.conv(filters, 1, activation=activation)
        cfg.conv(filters, 3, activation=activation)
        heads.append(cfg.conv(filters, 1, activation=activation))
    yolo = {"new_coords": 1, "scale_x_y": 2.0}
    cfg.conv(256, 3, activation=activation)
    cfg.yolo("0,1,2", V4_ANCHORS, activation="logistic", **yolo)
    for filters, head, mask in ((256, heads[1], "3,4,5"), (512, heads[0], "6,7,8")):
        cfg.route(heads[-1])
        cfg.conv(filters, 3, 2, activation)
        cfg.route(cfg.last, head)
        cfg.conv(filters, 1, activation=activation)
        cfg.conv(filters, 3, activation=activation)
        heads.append(cfg.conv(filters, 1, activation=activation))
        cfg.conv(filters * 2, 3, activation=activation)
        cfg.yolo(mask, V4_ANCHORS, activation="logistic", **yolo)
    return cfg.text()


ARCHITECTURES = {
    "yolov3": yolov3,
    "yolov3-tiny": yolov3_tiny,
    "yolov4": yolov4,
    "yolov4-tiny": yolov4_tiny,
    "yolov4-csp": yolov4_csp,
}


def random_weights(cfg_text: str, seed: int = 0) -> np.ndarray:
    """Weights in darknet's file order for every convolution of the cfg, scaled so that
    activations neither vanish nor explode through a hundred layers."""
    rng = np.random.default_rng(seed)
    sections = parse_cfg(cfg_text)
    channels = [sections[0].get_int("channels", 3)]  # output channels of each layer; [-1] is the input
    chunks, current = [], channels[0]
    for index, section in enumerate(sections[1:]):
        if section.type == "convolutional":
            filters, size = section.get_int("filters", 1), section.get_int("size", 1)
            fan_in = current // section.get_int("groups", 1) * size * size
            chunks.append(rng.normal(0, 0.1, filters))  # biases
            if section.get_int("batch_normalize", 0):
                chunks += [rng.uniform(0.8, 1.2, filters), rng.normal(0, 0.1, filters), rng.uniform(0.5, 1.5, filters)]
            # The last convolution of a residual block starts small, as in zero-init
            # residual training: otherwise darknet-53's 23 shortcuts inflate the features.
            residual = index + 2 < len(sections) and sections[index + 2].type == "shortcut"
            chunks.append(rng.normal(0, (0.3 if residual else 1) / np.sqrt(fan_in), filters * fan_in))
            current = filters
        elif section.type == "route":
            refs = [int(v) for v in section.options["layers"].split(",")]
            outs = [channels[1 + (index + ref if ref < 0 else ref)] for ref in refs]
            current = sum(outs) // section.get_int("groups", 1)
        channels.append(current)
    return np.concatenate(chunks).astype(np.float32)


def write_random_model(directory: Path, cfg_text: str, seed: int = 0, name: str = "model") -> Path:
    """A model directory the service can load: .cfg, random .weights, .names."""
    directory.mkdir(parents=True, exist_ok=True)
    classes = parse_cfg(cfg_text)[-1].get_int("classes", 0)
    (directory / f"{name}.cfg").write_text(cfg_text)
    write_weights(directory / f"{name}.weights", random_weights(cfg_text, seed))
    (directory / f"{name}.names").write_text("".join(f"class{i}\n" for i in range(classes)))
    return directory
