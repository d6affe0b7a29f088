"""How far int8 detections agree with fp32's on the same photo."""

from __future__ import annotations

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
