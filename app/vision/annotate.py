"""Drawing the detections so that a photo with hundreds of organisms stays readable:
a colour per class, lines scaled to the photo, a legend with the counts, and a label
on a box only where the label covers no other object."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from .detection import Detection

# Distinct colours for the first classes (RGB); more classes get evenly spread hues.
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 190),
    (0, 128, 128),
    (170, 110, 40),
    (255, 225, 25),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour(class_id: int) -> tuple[int, int, int]:
    if class_id < len(PALETTE):
        return PALETTE[class_id]
    hue = (class_id * 0.618033988749895) % 1.0  # golden ratio: neighbours stay apart
    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))


def annotate(
    image: np.ndarray, detections: list[Detection], counts: dict[str, int], channels: str = "RGB"
) -> np.ndarray:
    """A copy of the RGB photo with boxes, labels where they fit, and a legend; in BGR
    order when asked, for cv2.imencode: the copy is then the conversion, one pass over
    a 12 MP photo instead of two."""
    canvas = image.copy() if channels == "RGB" else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)

    def paint(colour: tuple[int, int, int]) -> tuple[int, int, int]:
        return colour if channels == "RGB" else colour[::-1]

    height, width = canvas.shape[:2]
    longest = max(width, height)
    line = max(1, round(longest / 700))
    font_scale = max(0.4, longest / 1800)
    text_thickness = max(1, round(font_scale * 1.5))

    boxes = np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4)
    for detection in detections:
        x, y, w, h = (round(v) for v in detection.box)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), paint(class_colour(detection.class_id)), line, cv2.LINE_8)

    taken: list[tuple[int, int, int, int]] = []
    for index, detection in enumerate(detections):
        text = f"{detection.class_name} {detection.confidence:.2f}"
        (tw, th), baseline = cv2.getTextSize(text, FONT, font_scale, text_thickness)
        x, y = int(detection.box[0]), int(detection.box[1])
        top = y - th - baseline - 2 * line if y - th - baseline - 2 * line >= 0 else y
        label = (x, top, tw + 2 * line, th + baseline + 2 * line)
        others = np.delete(boxes, index, axis=0)
        if _overlaps_any(label, others) or _overlaps_any(label, np.array(taken, dtype=np.float64).reshape(-1, 4)):
            continue
        taken.append(label)
        colour = class_colour(detection.class_id)
        cv2.rectangle(
            canvas, (label[0], label[1]), (label[0] + label[2], label[1] + label[3]), paint(colour), cv2.FILLED
        )
        cv2.putText(
            canvas,
            text,
            (x + line, top + th + line),
            FONT,
            font_scale,
            _text_colour(colour),
            text_thickness,
            cv2.LINE_AA,
        )

    _draw_legend(canvas, detections, counts, font_scale, text_thickness, line, paint)
    return canvas


def _overlaps_any(rect: tuple[int, int, int, int], boxes: np.ndarray) -> bool:
    if not len(boxes):
        return False
    x, y, w, h = rect
    return bool(
        np.any(
            (boxes[:, 0] < x + w)
            & (boxes[:, 0] + boxes[:, 2] > x)
            & (boxes[:, 1] < y + h)
            & (boxes[:, 1] + boxes[:, 3] > y)
        )
    )


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _draw_legend(canvas, detections, counts, font_scale, text_thickness, line, paint) -> None:
    """Counts per class found, top-left, on a translucent panel."""
    colour_of = {d.class_name: class_colour(d.class_id) for d in detections}
    rows = [(f"{name}: {count}", colour_of[name]) for name, count in counts.items() if count]
    if not rows:
        rows = [("no objects found", (200, 200, 200))]
    sizes = [cv2.getTextSize(text, FONT, font_scale, text_thickness) for text, _ in rows]
    row_height = max(th + baseline for (_, th), baseline in sizes) + 2 * line
    swatch = row_height - 2 * line
    pad = 2 * line + 2
    panel_w = min(canvas.shape[1], pad * 3 + swatch + max(tw for (tw, _), _ in sizes))
    panel_h = min(canvas.shape[0], pad * 2 + row_height * len(rows))
    region = canvas[:panel_h, :panel_w]
    region[:] = (region * 0.35).astype(np.uint8)  # darken, so the text reads on any photo
    for row, ((text, colour), ((_, th), _)) in enumerate(zip(rows, sizes, strict=True)):
        top = pad + row * row_height
        cv2.rectangle(canvas, (pad, top + line), (pad + swatch, top + line + swatch), paint(colour), cv2.FILLED)
        cv2.putText(
            canvas,
            text,
            (pad * 2 + swatch, top + line + th),
            FONT,
            font_scale,
            (255, 255, 255),
            text_thickness,
            cv2.LINE_AA,
        )
