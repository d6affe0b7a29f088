"""Reading darknet .cfg files: sections of options, the network input, the detection layers.

Parsing follows darknet's own reader (parser.c): every whitespace character is removed
from a line, `#` and `;` start a comment line, and when a key repeats inside a section
the first occurrence wins (darknet's option_find walks the list from its head).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DETECTION_LAYER_TYPES = ("yolo", "region")


class CfgError(ValueError):
    """The .cfg text is not a darknet network description we can use."""


@dataclass
class Section:
    type: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def get_int(self, key: str, default: int) -> int:
        return int(float(self.options.get(key, default)))

    def get_float(self, key: str, default: float) -> float:
        return float(self.options.get(key, default))


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
        sections[-1].options.setdefault(key, value)
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
    try:
        width, height = net.get_int("width", 0), net.get_int("height", 0)
        channels = net.get_int("channels", 3)
        letter_box = net.get_int("letter_box", 0) != 0
    except ValueError as exc:
        raise CfgError(f"[net] has a non-numeric size option: {exc}") from exc
    if width <= 0 or height <= 0:
        raise CfgError("[net] must set width and height")
    if width % 32 or height % 32:
        raise CfgError(f"[net] width={width} height={height}: both must be multiples of 32")
    return NetworkInput(width, height, channels, letter_box)


def detection_layers(sections: list[Section]) -> list[DetectionLayer]:
    layers = []
    for section in sections:
        if section.type in DETECTION_LAYER_TYPES:
            try:
                classes = section.get_int("classes", -1)
            except ValueError as exc:
                raise CfgError(f"line {section.line}: [{section.type}] classes: {exc}") from exc
            layers.append(DetectionLayer(section.type, classes, section.line))
    if not layers:
        raise CfgError("no [yolo] or [region] layer: this is not a detection network")
    return layers
