"""Reading darknet .cfg files: sections of options, the network input, the detection layers.

Parsing follows darknet's own reader (parser.c): every whitespace character is removed
from a line, `#` and `;` start a comment line, and when a key repeats inside a section
the first occurrence wins (darknet's option_find walks the list from its head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DETECTION_LAYER_TYPES = ("yolo", "region")
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
