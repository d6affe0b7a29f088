"""A photo's result as Label Studio's pre-annotation: the project's labelling config read
(which image, which rectangle tool, which labels), the model's classes matched to its
labels by name, and each box as a `rectanglelabels` region in percent of the photo.

Pure: no HTTP, no engine. app/http/label_studio.py fetches the photos and answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree.ElementTree import Element  # the type only; parsing goes through defusedxml

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from .photo import PhotoResult

REGION_TYPE = "rectanglelabels"
# A project's labelling config is a few KB (a template with a dozen labels); this holds
# thousands of labels. Parsed, XML takes ~20 times its size: a 40 MB config took 800 MB.
MAX_LABEL_CONFIG_CHARS = 256 * 1024
NOTE_LABELS = 20  # labels a log line names, of a config's thousands
# Label Studio rounds nothing; four decimals of a percent is a tenth of a pixel on 40,000 px.
PERCENT_DIGITS = 4


class LabelConfigError(ValueError):
    """The project's labelling config cannot take boxes from this model."""


@dataclass(frozen=True)
class LabelConfig:
    """What a project's labelling config says about where boxes go."""

    from_name: str  # the <RectangleLabels name=...> the regions belong to
    to_name: str  # the <Image name=...> they are drawn on
    data_key: str  # the task's data field with the photo's URL: "image" for value="$image"
    labels: tuple[str, ...]  # the <Label value=...> choices, in the config's order
    # <Label value="Rotifer" predicted_values="rotifer,live_rotifer"/>: the model classes
    # drawn as that label, Label Studio's own convention for its ML backends.
    predicted_values: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class LabelMatch:
    """The model's classes against a project's labels, by name."""

    labels: dict[str, str]  # model class -> the project's label of the same name
    not_in_model: tuple[str, ...]  # project labels no class of the model has: never predicted
    not_in_project: tuple[str, ...]  # model classes the project has no label for: dropped

    def note(self) -> str | None:
        """One line for the log, when the two sides differ."""
        parts = []
        if self.not_in_model:
            shown = ", ".join(self.not_in_model[:NOTE_LABELS])
            more = f" and {len(self.not_in_model) - NOTE_LABELS} more" if len(self.not_in_model) > NOTE_LABELS else ""
            parts.append(f"labels the model has no class for (never pre-labelled): {shown}{more}")
        if self.not_in_project:
            parts.append(f"{len(self.not_in_project)} model classes not in the project's labels are left out")
        return "; ".join(parts) or None


def parse_label_config(xml: str) -> LabelConfig:
    """The first <RectangleLabels> and the <Image> it points at (toName)."""
    if len(xml) > MAX_LABEL_CONFIG_CHARS:
        raise LabelConfigError(
            f"the labelling config is {len(xml) // 1024} KB; at most {MAX_LABEL_CONFIG_CHARS // 1024} KB is read"
        )
    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise LabelConfigError(f"the labelling config is not XML that can be read: {exc}") from None
    rectangles = _tags(root, "RectangleLabels")
    if not rectangles:
        raise LabelConfigError("the labelling config has no <RectangleLabels>: this model only draws boxes")
    tool = rectangles[0]
    from_name, to_name = tool.get("name"), tool.get("toName")
    if not from_name or not to_name:
        raise LabelConfigError("<RectangleLabels> needs name= and toName=")
    images = [image for image in _tags(root, "Image") if image.get("name") == to_name]
    if not images:
        raise LabelConfigError(f'<RectangleLabels toName="{to_name}"> names no <Image name="{to_name}">')
    value = images[0].get("value", "")
    if not value.startswith("$") or len(value) < 2:
        raise LabelConfigError(f'<Image name="{to_name}"> needs value="$field" naming the task\'s photo field')
    elements = [label for label in tool.iter() if label.tag == "Label" and label.get("value")]
    labels = tuple(label.get("value", "") for label in elements)
    if not labels:
        raise LabelConfigError(f'<RectangleLabels name="{from_name}"> has no <Label value=...>')
    predicted_values = tuple(
        (
            label.get("value", ""),
            tuple(name.strip() for name in label.get("predicted_values", "").split(",") if name.strip()),
        )
        for label in elements
        if label.get("predicted_values", "").strip()
    )
    return LabelConfig(
        from_name=from_name, to_name=to_name, data_key=value[1:], labels=labels, predicted_values=predicted_values
    )


def _tags(root: Element, tag: str) -> list[Element]:
    return [element for element in root.iter() if element.tag == tag]


def match_labels(
    class_names: Sequence[str], labels: Sequence[str], predicted_values: Sequence[tuple[str, Sequence[str]]] = ()
) -> LabelMatch:
    """A label's predicted_values first (the classes it names are drawn as it), then the
    same name, or the same name once case and outer spaces are set aside ("rotifer " is
    Rotifer); never by position: a project's order is its own."""
    by_key = {_key(label): label for label in reversed(labels)}  # the first of equal keys wins
    named = {}  # a class named in a label's predicted_values -> that label
    for label, classes in reversed(predicted_values):
        named.update({_key(name): label for name in classes})
    matched = {}
    for name in class_names:
        if _key(name) in named:
            matched[name] = named[_key(name)]
        elif name in labels:
            matched[name] = name
        elif _key(name) in by_key:
            matched[name] = by_key[_key(name)]
    used = set(matched.values())
    return LabelMatch(
        labels=matched,
        not_in_model=tuple(label for label in labels if label not in used),
        not_in_project=tuple(name for name in class_names if name not in matched),
    )


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def prediction(result: PhotoResult, config: LabelConfig, match: LabelMatch, model_version: str) -> dict:
    """One task's prediction: a region per box whose class the project has a label for."""
    regions = [
        _region(detection.box, match.labels[detection.class_name], detection.confidence, result, config)
        for detection in result.detections
        if detection.class_name in match.labels
    ]
    # The task's score sorts tasks in Label Studio's data manager: the mean box confidence.
    score = sum(region["score"] for region in regions) / len(regions) if regions else 0.0
    return {"model_version": model_version, "score": round(score, 4), "result": regions}


def _region(box, label: str, confidence: float, result: PhotoResult, config: LabelConfig) -> dict:
    # Inside the photo: a box that spills over an edge would be a region Label Studio cannot move.
    left, top = max(0.0, box[0]), max(0.0, box[1])
    right, bottom = min(float(result.width), box[0] + box[2]), min(float(result.height), box[1] + box[3])
    return {
        "from_name": config.from_name,
        "to_name": config.to_name,
        "type": REGION_TYPE,
        "original_width": result.width,
        "original_height": result.height,
        "image_rotation": 0,
        "value": {
            "x": _percent(left, result.width),
            "y": _percent(top, result.height),
            "width": _percent(right - left, result.width),
            "height": _percent(bottom - top, result.height),
            "rotation": 0,
            "rectanglelabels": [label],
        },
        "score": round(confidence, 4),
    }


def _percent(pixels: float, whole: int) -> float:
    return round(100.0 * max(0.0, pixels) / whole, PERCENT_DIGITS)
