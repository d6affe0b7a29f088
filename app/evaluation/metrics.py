"""How right the counts are, against labels: pure functions over boxes.

Detection quality as darknet's `detector map` computes it: every candidate (from a very
low threshold) sorted by confidence; one is a true positive when its best-overlapping
labelled box of its class (IoU >= 0.5) is not yet taken, else a false positive; AP is
the all-point area under the precision-recall curve (the VOC 2010+ rule darknet uses
by default). Counting quality per photo: predicted minus labelled, at the service's
threshold and over a sweep of thresholds, per class and for all classes at once.

A number that has no sensible value is None (printed "-", null in JSON), never 0: the
recall and AP of a class nobody labelled, the precision of a class never predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from app.vision.detection import Detection
from app.vision.postprocess import iou_one_to_many

MATCH_IOU = 0.5
SWEEP = tuple(round(0.05 + 0.01 * step, 2) for step in range(91))  # 0.05 .. 0.95


@dataclass(frozen=True)
class LabelledBox:
    class_id: int
    box: tuple[float, float, float, float]  # x, y, width, height in pixels


@dataclass(frozen=True)
class PhotoComparison:
    photo: str
    labels: list[LabelledBox]
    candidates: list[Detection]  # the service's detections at a very low threshold


@dataclass
class ClassMetrics:
    labelled: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    precision: float | None = None  # None: nothing predicted above the threshold
    recall: float | None = None  # None, like ap50: nothing labelled
    ap50: float | None = None
    count_mae: float = 0.0
    count_bias: float = 0.0
    best_count_threshold: float = 0.0
    count_mae_at_best: float = 0.0
    # For plots and the JSON: the curve, the sweep, and per photo (predicted, labelled).
    pr_curve: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    sweep: list[tuple[float, float]] = field(default_factory=list)
    counts: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class OverallCounts:
    """The deciding classes at once: the error of a photo is the sum of their errors.

    Only classes the lab labels decide (those with a label in the set, or those named):
    a class nobody labels (the kites and cats of a COCO model) would count every box
    found as an error and push the one threshold up where no labelled class wants it."""

    count_mae: float  # at the threshold evaluated
    best_count_threshold: float  # the one threshold for all classes with the smallest error
    count_mae_at_best: float
    classes: tuple[str, ...] = ()  # the classes that decided it
    sweep: list[tuple[float, float]] = field(default_factory=list)  # (threshold, count MAE), for the plot


@dataclass
class Evaluation:
    threshold: float
    classes: dict[str, ClassMetrics]
    worst_photos: list[tuple[str, int]]  # (photo, count error of the deciding classes), worst first
    photo_names: list[str] = field(default_factory=list)  # in the order of each class's `counts`
    overall: OverallCounts | None = None

    @property
    def photos(self) -> int:
        return len(self.worst_photos)

    @property
    def map50(self) -> float | None:
        """Mean AP over the classes that have labels: what a lab's data says."""
        labelled = [m.ap50 for m in self.classes.values() if m.ap50 is not None]
        return float(np.mean(labelled)) if labelled else None

    @property
    def map50_darknet(self) -> float:
        """darknet's mAP: the mean over every class in .names, an unlabelled one as 0."""
        return float(np.mean([m.ap50 or 0.0 for m in self.classes.values()])) if self.classes else 0.0


def evaluate(
    photos: Sequence[PhotoComparison],
    class_names: Sequence[str],
    threshold: float,
    deciding: Sequence[int] | None = None,
) -> Evaluation:
    """deciding: the class ids whose counts decide the one threshold for all classes and
    the worst photos; None: every class with a label in the set."""
    classes = {}
    for class_id, name in enumerate(class_names):
        metrics = _detection_quality(photos, class_id, threshold)
        _count_quality(metrics, photos, class_id, threshold)
        classes[name] = metrics
    if deciding is None:
        deciding = [class_id for class_id, metrics in enumerate(classes.values()) if metrics.labelled]
    deciding = sorted(set(deciding))
    errors = [(photo.photo, _photo_error(photo, deciding, threshold)) for photo in photos]
    overall = None
    if photos and deciding:
        overall = _overall(photos, len(class_names), deciding, threshold)
        overall = replace(overall, classes=tuple(class_names[c] for c in deciding))
    return Evaluation(
        threshold,
        classes,
        sorted(errors, key=lambda item: -item[1]),
        photo_names=[photo.photo for photo in photos],
        overall=overall,
    )


def _photo_error(photo: PhotoComparison, deciding: Sequence[int], threshold: float) -> int:
    return sum(abs(_count(photo, c, threshold) - _labelled(photo, c)) for c in deciding)


def _overall(
    photos: Sequence[PhotoComparison], class_count: int, deciding: Sequence[int], threshold: float
) -> OverallCounts:
    # Per photo, once: the candidates' classes and scores, and the labelled count per class.
    arrays = [
        (
            np.array([d.class_id for d in photo.candidates], dtype=int),
            np.array([d.confidence for d in photo.candidates], dtype=float),
            np.bincount(np.array([label.class_id for label in photo.labels], dtype=int), minlength=class_count),
        )
        for photo in photos
    ]

    chosen = np.array(deciding, dtype=int)

    def mae(at: float) -> float:
        errors = [
            np.abs(np.bincount(ids[scores > at], minlength=class_count) - labelled)[chosen].sum()
            for ids, scores, labelled in arrays
        ]
        return float(np.mean(errors))

    sweep = [(at, mae(at)) for at in SWEEP]
    best = min(sweep, key=lambda point: (point[1], abs(point[0] - threshold)))  # ties: nearest the default
    return OverallCounts(count_mae=mae(threshold), best_count_threshold=best[0], count_mae_at_best=best[1], sweep=sweep)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP: precision made monotone from the right, summed over
    each step of recall (PASCAL VOC 2010+, darknet's default)."""
    points = np.concatenate(([0.0], recall, [1.0]))
    values = np.concatenate(([0.0], precision, [0.0]))
    values = np.maximum.accumulate(values[::-1])[::-1]
    steps = np.nonzero(points[1:] != points[:-1])[0]
    return float(np.sum((points[steps + 1] - points[steps]) * values[steps + 1]))


def _detection_quality(photos: Sequence[PhotoComparison], class_id: int, threshold: float) -> ClassMetrics:
    ranked = []  # (confidence, is a true positive by darknet's rule)
    labelled = 0
    for photo in photos:
        truths = [label.box for label in photo.labels if label.class_id == class_id]
        labelled += len(truths)
        taken: set[int] = set()
        mine = sorted((d for d in photo.candidates if d.class_id == class_id), key=lambda d: -d.confidence)
        for detection in mine:
            best = -1
            if truths:
                overlaps = iou_one_to_many(np.array(detection.box), np.array(truths))
                index = int(np.argmax(overlaps))
                best = index if overlaps[index] >= MATCH_IOU else -1
            hit = best >= 0 and best not in taken
            if hit:
                taken.add(best)
            ranked.append((detection.confidence, hit))
    ranked.sort(key=lambda item: -item[0])
    hits = np.array([hit for _, hit in ranked], dtype=bool)
    confidences = np.array([confidence for confidence, _ in ranked])
    true_positives, false_positives = np.cumsum(hits), np.cumsum(~hits)
    metrics = ClassMetrics(labelled=labelled)
    if len(ranked) and labelled:
        recall = true_positives / labelled
        precision = true_positives / (true_positives + false_positives)
        metrics.ap50 = average_precision(recall, precision)
        metrics.pr_curve = (recall.tolist(), precision.tolist())
    kept = confidences > threshold
    metrics.tp = int(hits[kept].sum())
    metrics.fp = int((~hits[kept]).sum())
    metrics.fn = labelled - metrics.tp
    metrics.precision = metrics.tp / (metrics.tp + metrics.fp) if metrics.tp + metrics.fp else None
    metrics.recall = metrics.tp / labelled if labelled else None
    if labelled and not ranked:
        metrics.ap50 = 0.0  # labelled, never found: that is a value
    return metrics


def _count(photo: PhotoComparison, class_id: int, threshold: float) -> int:
    return sum(1 for d in photo.candidates if d.class_id == class_id and d.confidence > threshold)


def _labelled(photo: PhotoComparison, class_id: int) -> int:
    return sum(1 for label in photo.labels if label.class_id == class_id)


def _count_quality(metrics: ClassMetrics, photos: Sequence[PhotoComparison], class_id: int, threshold: float) -> None:
    if not photos:
        return
    truth = np.array([_labelled(photo, class_id) for photo in photos])

    def errors(at: float) -> np.ndarray:
        return np.array([_count(photo, class_id, at) for photo in photos]) - truth

    at_threshold = errors(threshold)
    metrics.counts = [
        (int(predicted), int(labelled)) for predicted, labelled in zip(at_threshold + truth, truth, strict=True)
    ]
    metrics.count_mae = float(np.abs(at_threshold).mean())
    metrics.count_bias = float(at_threshold.mean())
    metrics.sweep = [(at, float(np.abs(errors(at)).mean())) for at in SWEEP]
    best = min(metrics.sweep, key=lambda point: (point[1], abs(point[0] - threshold)))  # ties: nearest the default
    metrics.best_count_threshold, metrics.count_mae_at_best = best
