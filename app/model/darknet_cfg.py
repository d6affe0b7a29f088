"""Reading darknet .cfg files: sections of options, the network input, the detection layers,
and each layer's output shape as darknet computes it (the exporter and the weights check
follow the same arithmetic).

Parsing follows darknet's own reader (parser.c): every whitespace character is removed
from a line, `#` and `;` start a comment line, and when a key repeats inside a section
the first occurrence wins (darknet's option_find walks the list from its head).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

DETECTION_LAYER_TYPES = ("yolo", "region")
CONVOLUTIONAL_TYPES = ("convolutional", "conv")
MAXPOOL_TYPES = ("maxpool", "max")
# The largest network side accepted, from memory: a YOLOv3's first layer alone holds
# 32 filters x W x H float32 per image, 512 MiB at 2048x2048, and the onnxruntime engine
# runs tiles 8 at a time: 4 GiB for that one activation, half the shipped 8 GiB k8s limit.
# Published darknet cfgs run at 320-1280 and the production model at 832; a side beyond
# 2048 is a slip (width=100000 took 4.8 GB to find nothing), not a model that counts better.
MAX_NETWORK_SIDE = 2048
NETWORK_STRIDE = 32  # YOLO downsamples 5 times: a side must divide into whole cells
MAX_CHANNELS = 16  # photos are 1-4 channels; anything far above is a slip, not a camera
# Above any count darknet reads (max_batches and steps run to millions), far below where
# float32 arithmetic in an exported graph turns a number into an infinity.
MAX_OPTION_NUMBER = 1e9


class CfgError(ValueError):
    """The .cfg text is not a darknet network description we can use."""


@dataclass
class Section:
    type: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0
    option_lines: dict[str, int] = field(default_factory=dict)  # key -> line in the cfg

    def get_int(self, key: str, default: int) -> int:
        return int(self.get_float(key, default))

    def get_float(self, key: str, default: float) -> float:
        """The option as a finite number; CfgError naming the line for anything else."""
        value = self.options.get(key, default)
        try:
            number = float(value)
        except ValueError:
            raise CfgError(f"{self.where(key)}: [{self.type}] {key}={value} is not a number") from None
        if not math.isfinite(number):
            raise CfgError(f"{self.where(key)}: [{self.type}] {key}={value} is not a finite number")
        return number

    def where(self, key: str) -> str:
        return f"line {self.option_lines.get(key, self.line)}"


@dataclass(frozen=True)
class DetectionLayer:
    """A [yolo] or [region] section: where boxes and class scores come out."""

    type: str
    classes: int
    line: int


@dataclass(frozen=True)
class NetworkInput:
    width: int
    height: int
    channels: int
    letter_box: bool


@dataclass(frozen=True)
class Shape:
    """A layer's output: darknet's out_c, out_h, out_w."""

    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class Window:
    """The kernel of a [convolutional] or [maxpool] layer as darknet reads it."""

    size: int
    stride_x: int
    stride_y: int
    padding: int  # [convolutional]: on each side; [maxpool]: in all, darknet puts half of it before


def parse_cfg(text: str) -> list[Section]:
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"line {number}: malformed section header {raw.strip()!r}")
            sections.append(Section(type=line[1:-1].lower(), line=number))
            continue
        if not sections:
            raise CfgError(f"line {number}: option {raw.strip()!r} before any [section]")
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise CfgError(f"line {number}: expected key=value, got {raw.strip()!r}")
        if key not in sections[-1].options:
            _check_finite(number, sections[-1].type, key, value)
            sections[-1].options[key] = value
            sections[-1].option_lines[key] = number
    if not sections or sections[0].type not in ("net", "network"):
        raise CfgError("the first section must be [net]")
    return sections


def render_cfg(sections: list[Section]) -> str:
    """The inverse of parse_cfg (comments and layout are not kept)."""
    blocks = []
    for section in sections:
        lines = [f"[{section.type}]"] + [f"{k}={v}" for k, v in section.options.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def network_input(sections: list[Section]) -> NetworkInput:
    net = sections[0]
    width, height = (_network_side(net, key) for key in ("width", "height"))
    channels = net.get_int("channels", 3)
    if not 1 <= channels <= MAX_CHANNELS:
        raise CfgError(f"{net.where('channels')}: [net] channels={net.options['channels']} is not a channel count")
    letter_box = net.get_int("letter_box", 0) != 0
    return NetworkInput(width, height, channels, letter_box)


def _network_side(net: Section, key: str) -> int:
    if key not in net.options:
        raise CfgError(f"line {net.line}: [net] must set width and height")
    side = net.get_float(key, 0)
    if side != int(side) or side <= 0 or side % NETWORK_STRIDE or side > MAX_NETWORK_SIDE:
        raise CfgError(
            f"{net.where(key)}: [net] {key}={net.options[key]} must be one of the multiples of {NETWORK_STRIDE} "
            f"from {NETWORK_STRIDE} to {MAX_NETWORK_SIDE}"
        )
    return int(side)


def detection_layers(sections: list[Section]) -> list[DetectionLayer]:
    layers = []
    for section in sections:
        if section.type in DETECTION_LAYER_TYPES:
            layers.append(DetectionLayer(section.type, section.get_int("classes", -1), section.line))
    if not layers:
        raise CfgError("no [yolo] or [region] layer: this is not a detection network")
    return layers


def input_shape(sections: list[Section] | tuple[Section, ...]) -> Shape:
    net = sections[0]
    return Shape(net.get_int("channels", 3), net.get_int("height", 0), net.get_int("width", 0))


def at_least_one(section: Section, key: str, default: int) -> int:
    """A count or stride: 0 would divide by zero in darknet's arithmetic and in ours."""
    value = section.get_int(key, default)
    if value < 1:
        written = section.options.get(key, default)
        raise CfgError(f"{section.where(key)}: [{section.type}] {key}={written} must be at least 1")
    return value


def convolution_window(section: Section) -> Window:
    size = at_least_one(section, "size", 1)
    padding = size // 2 if section.get_int("pad", 0) else section.get_int("padding", 0)
    return Window(size, *_strides(section), padding)


def convolution_output(section: Section, shape: Shape) -> Shape:
    window = convolution_window(section)
    return _slide(section, shape, at_least_one(section, "filters", 1), window, 2 * window.padding)


def maxpool_window(section: Section) -> Window:
    stride_x, stride_y = _strides(section)
    size = at_least_one(section, "size", section.get_int("stride", 1))
    return Window(size, stride_x, stride_y, section.get_int("padding", size - 1))


def maxpool_output(section: Section, shape: Shape) -> Shape:
    window = maxpool_window(section)
    return _slide(section, shape, shape.channels, window, window.padding)


def upsample_output(section: Section, shape: Shape) -> Shape:
    stride = section.get_int("stride", 2)
    if stride == 0:
        raise CfgError(f"{section.where('stride')}: [upsample] stride=0 must be at least 1 (or negative, to shrink)")
    if stride < 0:  # darknet's reverse upsample: a downsample by -stride
        return _slide(section, shape, shape.channels, Window(-stride, -stride, -stride, 0), 0)
    return Shape(shape.channels, shape.height * stride, shape.width * stride)


def route_output(section: Section, sources: list[Shape]) -> Shape:
    """groups=: darknet keeps the group_id-th slice of each source's channels."""
    groups = at_least_one(section, "groups", 1)
    return Shape(sum(source.channels // groups for source in sources), sources[0].height, sources[0].width)


def layer_references(section: Section, index: int, key: str) -> list[int]:
    """A [route]'s layers= or a [shortcut]'s from=, as indexes of earlier layers (darknet
    counts a negative reference back from the layer itself)."""
    text = section.options.get(key, "")
    targets = []
    for item in text.split(","):
        try:
            value = int(item)
        except ValueError:
            raise CfgError(f"{section.where(key)}: [{section.type}] {key}={text} must be layer numbers") from None
        target = index + value if value < 0 else value
        if not 0 <= target < index:
            raise CfgError(
                f"{section.where(key)}: [{section.type}] {key}={text} refers to layer {target}, "
                f"not one of the {index} layers before it"
            )
        targets.append(target)
    return targets


def _strides(section: Section) -> tuple[int, int]:
    stride = at_least_one(section, "stride", 1)
    return at_least_one(section, "stride_x", stride), at_least_one(section, "stride_y", stride)


def _slide(section: Section, shape: Shape, channels: int, window: Window, padding: int) -> Shape:
    """darknet's (side + padding in all - size) / stride + 1 on both sides."""
    height = (shape.height + padding - window.size) // window.stride_y + 1
    width = (shape.width + padding - window.size) // window.stride_x + 1
    if height <= 0 or width <= 0:
        raise CfgError(f"line {section.line}: [{section.type}] the input {shape.height}x{shape.width} is too small")
    return Shape(channels, height, width)


def _check_finite(line: int, section: str, key: str, value: str) -> None:
    """Darknet reads numbers with atof/atoi, which take inf, nan and 1e999: refuse them
    here, once for every section, instead of meeting an infinity in a layer's arithmetic."""
    for item in value.split(","):
        try:
            number = float(item)
        except ValueError:
            continue  # a word (activation=leaky, policy=steps): not a number at all
        if not math.isfinite(number) or abs(number) > MAX_OPTION_NUMBER:
            raise CfgError(f"line {line}: [{section}] {key}={value} is not a finite number of a sane size")


def check_yolo_anchors(sections: list[Section]) -> None:
    """A served model's [yolo] layers: anchors= are positive pixel sizes in pairs, mask=
    picks some of them by index (an index past them reads memory darknet never set)."""
    for section in sections:
        if section.type == "yolo":
            _check_anchors(section)


def check_yolo_filters(sections: list[Section]) -> None:
    """The convolution right before a [yolo] layer makes (classes + 5) numbers for each
    anchor in its mask. darknet and OpenCV run on with any other filters= (or stop with a
    traceback) and count nothing right."""
    for before, section in itertools.pairwise(sections):
        if section.type != "yolo" or before.type not in CONVOLUTIONAL_TYPES:
            continue
        classes = section.get_int("classes", 20)  # darknet's default
        if section.options.get("mask"):
            anchors, which = len(_numbers(section, "mask", int)), "in mask"
        else:  # darknet's parse_yolo: without a mask, the first num= anchors (num defaults to 1)
            anchors, which = section.get_int("num", 1), "(no mask: num=)"
        needed = (classes + 5) * anchors
        if before.get_int("filters", 1) != needed:
            raise CfgError(
                f"{before.where('filters')}: [{before.type}] filters={before.options.get('filters', 1)} before [yolo] "
                f"({section.where('classes')}) with classes={classes} and {anchors} anchors {which} "
                f"must be ({classes} + 5) x {anchors} = {needed}"
            )


def _check_anchors(section: Section) -> None:
    anchors = _numbers(section, "anchors", float)
    if not anchors or len(anchors) % 2 or min(anchors) <= 0:
        raise CfgError(f"{section.where('anchors')}: [yolo] anchors= must be pairs of positive sizes")
    mask = _numbers(section, "mask", int) if section.options.get("mask") else []
    pairs = len(anchors) // 2
    if any(not 0 <= index < pairs for index in mask):
        raise CfgError(f"{section.where('mask')}: [yolo] mask= indexes must be from 0 to {pairs - 1} ({pairs} anchors)")


def _numbers(section: Section, key: str, kind) -> list:
    text = section.options.get(key, "")
    try:
        return [kind(item) for item in text.split(",") if item]
    except ValueError:
        noun = "integers" if kind is int else "numbers"
        raise CfgError(f"{section.where(key)}: [{section.type}] {key}={text} must be {noun}") from None
