"""How far int8 detections agree with fp32's on the same photo."""

from __future__ import annotations

import math

import numpy as np

from app.vision.detection import Detection
from app.vision.postprocess import iou_one_to_many

MATCH_IOU = 0.5


def matched_boxes(reference: list[Detection], candidate: list[Detection], min_iou: float = MATCH_IOU) -> int:
    """How many reference boxes have a candidate box of the same class at IoU >= min_iou,
    each candidate box used once (the most confident reference boxes choose first)."""
    used: set[int] = set()
    matched = 0
    for box in sorted(reference, key=lambda detection: -detection.confidence):
        options = [i for i, other in enumerate(candidate) if other.class_id == box.class_id and i not in used]
        if not options:
            continue
        overlaps = iou_one_to_many(np.array(box.box), np.array([candidate[i].box for i in options]))
        best = int(np.argmax(overlaps))
        if overlaps[best] >= min_iou:
            used.add(options[best])
            matched += 1
    return matched


# The gate's verdict must rest on enough boxes that one box cannot tip it: with 100, one
# lost box moves the agreement by 1% at most (at 25, by 4%: 92% and 98% are two boxes
# apart). A floor on the count, not on the interval's lower bound: the Wilson bound of
# 100/100 matched is 96.3%, so a 98% bound would need 189 boxes all matched and refuse
# any candidate that lost one box below 280; the interval is reported beside the
# share, for the reader to weigh.
MIN_GATE_BOXES = 100
Z_95 = 1.959964


def wilson_interval(matched: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval (95% by default) around matched/total; (0, 1) for no box."""
    if total <= 0:
        return 0.0, 1.0
    share = matched / total
    centre = share + z * z / (2 * total)
    spread = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total))
    scale = 1 + z * z / total
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def too_few_boxes(boxes: int) -> str | None:
    """Why a verdict on this many held-out boxes is refused; None when there are enough."""
    if boxes >= MIN_GATE_BOXES:
        return None
    return f"rests on {boxes} boxes; at least {MIN_GATE_BOXES} needed: add photos with --photos"
