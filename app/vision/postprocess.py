"""From candidate boxes to counted detections: pure functions on numpy arrays.

Darknet keeps a score per class for every box and its NMS runs per class, so a box
whose scores pass the threshold for two classes is drawn and counted twice. Here a box
takes its best class only, then NMS runs per class: one object, one count.
"""

from __future__ import annotations

import numpy as np

from .detection import Candidates, Detection, DetectOptions

# The most boxes that go into NMS (best first): far above any real photo's count,
# low enough that threshold=0 on a tiled photo answers in seconds, not minutes.
MAX_CANDIDATES = 3000
WHOLE_IMAGE_PASS = 0  # in tiled inference; tiles are passes 1, 2, ...


def best_class(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best class id and its score."""
    class_ids = scores.argmax(axis=1)
    return class_ids, scores[np.arange(len(scores)), class_ids]


def _intersection(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    left = np.maximum(box[0], boxes[:, 0])
    top = np.maximum(box[1], boxes[:, 1])
    right = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    bottom = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    return np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x, y, w, h box with each of many (no +1 pixel convention, as darknet)."""
    intersection = _intersection(box, boxes)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def ios_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box: 1 when one box lies inside the other."""
    intersection = _intersection(box, boxes)
    smaller = np.minimum(box[2] * box[3], boxes[:, 2] * boxes[:, 3])
    return np.divide(intersection, smaller, out=np.zeros_like(intersection), where=smaller > 0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    ios_threshold: float | None = None,
    passes: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy NMS: indices kept, best first. A box suppresses others only while kept.

    With ios_threshold and passes (which tile, or the whole photo, found each box), a
    box mostly inside a better one is suppressed too where a tile found either: at
    tile scale one organism yields nested boxes (a whole dog and a part of it, from
    this tile or its neighbour). Between two boxes of the whole-photo pass only IoU
    counts, as without tiling, so a foal inside its mare's box stays."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        duplicate = iou_one_to_many(boxes[best], boxes[rest]) > iou_threshold
        if ios_threshold is not None and passes is not None:
            tiles_involved = (passes[rest] != WHOLE_IMAGE_PASS) | (passes[best] != WHOLE_IMAGE_PASS)
            duplicate |= tiles_involved & (ios_one_to_many(boxes[best], boxes[rest]) > ios_threshold)
        order = rest[~duplicate]
    return np.asarray(keep, dtype=np.intp)


def classwise_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    ios_threshold: float | None = None,
    passes: np.ndarray | None = None,
) -> np.ndarray:
    """NMS within each class in one pass: boxes of different classes are moved apart."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.intp)
    boxes = boxes.astype(np.float64)
    extent = float(np.abs(boxes).max() + np.abs(boxes[:, 2:]).max() + 1)
    shifted = boxes.copy()
    shifted[:, :2] += class_ids[:, None] * extent
    return nms(shifted, scores, iou_threshold, ios_threshold, passes)


def clip_to_image(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    left = np.clip(boxes[:, 0], 0, width)
    top = np.clip(boxes[:, 1], 0, height)
    right = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    bottom = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    return np.stack([left, top, right - left, bottom - top], axis=1)


def select_detections(
    candidates: Candidates,
    options: DetectOptions,
    class_names: tuple[str, ...],
    image_size: tuple[int, int],
    ios_threshold: float | None = None,
) -> list[Detection]:
    """Threshold, one class per box, class filter, class-wise NMS; best first."""
    class_ids, confidences = best_class(candidates.scores)
    keep = confidences > options.threshold  # darknet keeps prob > thresh, strictly
    if options.classes is not None:
        keep &= np.isin(class_ids, sorted(options.classes))
    boxes, class_ids, confidences = candidates.boxes[keep], class_ids[keep], confidences[keep]
    passes = candidates.passes[keep] if candidates.passes is not None else None
    if len(confidences) > MAX_CANDIDATES:  # threshold=0 is legal: bound the NMS work
        best = np.argsort(-confidences, kind="stable")[:MAX_CANDIDATES]
        boxes, class_ids, confidences = boxes[best], class_ids[best], confidences[best]
        passes = passes[best] if passes is not None else None
    kept = classwise_nms(boxes, confidences, class_ids, options.nms, ios_threshold, passes)
    clipped = clip_to_image(boxes[kept].astype(np.float64), *image_size)
    return [
        Detection(int(c), class_names[int(c)], float(s), tuple(float(v) for v in box))
        for c, s, box in zip(class_ids[kept], confidences[kept], clipped, strict=True)
    ]


def count_by_class(detections: list[Detection], class_names: tuple[str, ...]) -> dict[str, int]:
    """A count for every class, in .names order, zeros included."""
    counts = dict.fromkeys(class_names, 0)
    for detection in detections:
        counts[detection.class_name] += 1
    return counts


class BestCandidates:
    """The candidates of every pass of a photo as they come, at most about twice
    MAX_CANDIDATES kept: those select_detections would take from all of them (over the
    threshold, of the classes asked, then the best by score, the earliest first among
    equals), in their order. threshold=0 on a tiled 100 MP photo kept some 2 million
    boxes x 80 class scores, twice (all tiles, then merged): the photo's memory doubled."""

    def __init__(self, options: DetectOptions):
        self.options = options
        self._parts: list[Candidates] = []
        self._count = 0
        self._classes = 0

    def add(self, candidates: Candidates, pass_index: int) -> None:
        self._classes = candidates.scores.shape[1]
        class_ids, confidences = best_class(candidates.scores)
        keep = confidences > self.options.threshold
        if self.options.classes is not None:
            keep &= np.isin(class_ids, sorted(self.options.classes))
        kept = int(keep.sum())
        if not kept:
            return
        self._parts.append(
            Candidates(
                candidates.boxes[keep].astype(np.float32),
                candidates.scores[keep].astype(np.float32),
                np.full(kept, pass_index),
            )
        )
        self._count += kept
        if self._count > 2 * MAX_CANDIDATES:
            self._parts = [self._best()]
            self._count = len(self._parts[0].boxes)

    def merged(self) -> Candidates:
        if not self._parts:
            return Candidates(np.zeros((0, 4), np.float32), np.zeros((0, self._classes), np.float32), np.zeros(0, int))
        return self._best() if self._count > MAX_CANDIDATES else _joined(self._parts)

    def _best(self) -> Candidates:
        joined = _joined(self._parts)
        _, confidences = best_class(joined.scores)
        best = np.sort(np.argsort(-confidences, kind="stable")[:MAX_CANDIDATES])  # back in arrival order
        return Candidates(joined.boxes[best], joined.scores[best], joined.passes[best])


def _joined(parts: list[Candidates]) -> Candidates:
    if len(parts) == 1:
        return parts[0]
    return Candidates(
        np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.passes for p in parts]),
    )
