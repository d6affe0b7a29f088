import numpy as np
import pytest

from app.vision.detection import Candidates, DetectOptions
from app.vision.postprocess import (
    MAX_CANDIDATES,
    BestCandidates,
    best_class,
    classwise_nms,
    clip_to_image,
    count_by_class,
    iou_one_to_many,
    nms,
    select_detections,
)
from app.vision.tiling import merge

NAMES = ("Rotifer", "One-Egg-Carrier", "Dead")


def candidates(rows):
    """rows: (x, y, w, h, score per class...)"""
    array = np.array(rows, dtype=np.float32).reshape(-1, 4 + len(NAMES))
    return Candidates(boxes=array[:, :4], scores=array[:, 4:])


def test_a_box_with_two_classes_above_threshold_is_counted_once():
    # Darknet would report this box as a Rotifer and as an egg-carrier: two counts.
    found = select_detections(candidates([(10, 10, 20, 20, 0.6, 0.5, 0.0)]), DetectOptions(), NAMES, (100, 100))
    assert [(d.class_name, round(d.confidence, 3)) for d in found] == [("Rotifer", 0.6)]
    assert count_by_class(found, NAMES) == {"Rotifer": 1, "One-Egg-Carrier": 0, "Dead": 0}


def test_nms_is_per_class():
    rows = [
        (10, 10, 20, 20, 0.9, 0.0, 0.0),
        (11, 11, 20, 20, 0.8, 0.0, 0.0),  # same class, IoU ~0.82: suppressed
        (10, 10, 20, 20, 0.0, 0.0, 0.7),  # same place, other class: kept
        (60, 60, 20, 20, 0.5, 0.0, 0.0),  # same class, elsewhere: kept
    ]
    found = select_detections(candidates(rows), DetectOptions(), NAMES, (100, 100))
    assert [(d.class_name, d.box[:2]) for d in found] == [
        ("Rotifer", (10.0, 10.0)),
        ("Dead", (10.0, 10.0)),
        ("Rotifer", (60.0, 60.0)),
    ]
    assert count_by_class(found, NAMES) == {"Rotifer": 2, "One-Egg-Carrier": 0, "Dead": 1}


def test_threshold_is_strict_and_options_apply():
    rows = [(0, 0, 10, 10, 0.25, 0.0, 0.0), (50, 50, 10, 10, 0.0, 0.3, 0.0), (20, 20, 5, 5, 0.0, 0.0, 0.9)]
    default = select_detections(candidates(rows), DetectOptions(), NAMES, (100, 100))
    assert sorted(d.class_name for d in default) == ["Dead", "One-Egg-Carrier"]  # 0.25 is not > 0.25
    only_dead = select_detections(candidates(rows), DetectOptions(classes=frozenset({2})), NAMES, (100, 100))
    assert [d.class_name for d in only_dead] == ["Dead"]
    strict = select_detections(candidates(rows), DetectOptions(threshold=0.95), NAMES, (100, 100))
    assert strict == []


def test_filtered_class_does_not_hand_its_box_to_the_next_best():
    # The box is a Dead organism first; asking for Rotifers only must not relabel it.
    rows = [(0, 0, 10, 10, 0.4, 0.0, 0.9)]
    found = select_detections(candidates(rows), DetectOptions(classes=frozenset({0})), NAMES, (100, 100))
    assert found == []


def test_boxes_are_clipped_to_the_image():
    found = select_detections(candidates([(-5, 90, 20, 20, 0.9, 0, 0)]), DetectOptions(), NAMES, (100, 100))
    assert found[0].box == (0.0, 90.0, 15.0, 10.0)
    assert clip_to_image(np.array([[95.0, -3.0, 10.0, 10.0]]), 100, 100).tolist() == [[95.0, 0.0, 5.0, 7.0]]


def test_nms_keeps_the_best_and_uses_strict_iou():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 10, 10]], dtype=np.float64)
    assert iou_one_to_many(boxes[0], boxes[1:]).tolist() == pytest.approx([1.0, 1 / 3])
    assert nms(boxes, np.array([0.5, 0.9, 0.8]), 0.45).tolist() == [1, 2]
    # IoU exactly at the threshold is kept (darknet suppresses only when IoU > thresh).
    assert nms(boxes, np.array([0.5, 0.9, 0.8]), 1 / 3).tolist() == [1, 2]
    assert classwise_nms(boxes[:0], np.zeros(0), np.zeros(0, dtype=int), 0.45).tolist() == []


def test_best_class_and_counts_keep_names_order():
    ids, scores = best_class(np.array([[0.1, 0.7, 0.2], [0.3, 0.1, 0.0]]))
    assert ids.tolist() == [1, 0]
    assert scores.tolist() == pytest.approx([0.7, 0.3])
    assert list(count_by_class([], NAMES)) == list(NAMES)


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.9])
@pytest.mark.parametrize("classes", [None, frozenset({1, 3})])
def test_candidates_kept_as_they_come_select_what_all_of_them_together_would(threshold, classes):
    """threshold=0 on a tiled photo: the passes' candidates are bounded as they come
    (BestCandidates), and the detections are those of every candidate merged at once."""
    rng = np.random.default_rng(7)
    parts = []
    for _ in range(12):  # a whole-photo pass and 11 tiles, 1500 boxes each
        xy = rng.uniform(0, 900, (1500, 2))
        wh = rng.uniform(5, 60, (1500, 2))
        scores = rng.uniform(0, 1, (1500, 5)).astype(np.float32) ** 3
        scores[rng.uniform(size=1500) < 0.05] = 0.5  # ties at the bound of those kept
        parts.append(Candidates(np.hstack([xy, wh]).astype(np.float32), scores))
    options = DetectOptions(threshold=threshold, classes=classes)
    names = ("a", "b", "c", "d", "e")
    pool = BestCandidates(options)
    for index, part in enumerate(parts):
        pool.add(part, index)
    kept = pool.merged()
    assert len(kept.boxes) <= MAX_CANDIDATES
    expected = select_detections(merge(parts), options, names, (1000, 1000), ios_threshold=0.6)
    assert select_detections(kept, options, names, (1000, 1000), ios_threshold=0.6) == expected
    assert len(BestCandidates(options).merged().scores) == 0
