"""Tiled inference: the pure geometry, then real counts on a big synthetic photo."""

import itertools
import time

import cv2
import numpy as np
import pytest
from support import photo_rgb

from app.vision.detection import Candidates, DetectOptions
from app.vision.postprocess import classwise_nms, count_by_class
from app.vision.tiling import Tile, drop_cut_boxes, should_tile, tile_grid


@pytest.mark.parametrize(
    ("mode", "size", "tiled"),
    [
        ("auto", (768, 576), False),  # dog.jpg on a 416 network: not twice as large
        ("auto", (833, 400), True),
        ("auto", (3300, 2500), True),
        ("off", (3300, 2500), False),
        ("on", (768, 576), True),
        ("on", (400, 300), False),  # nothing to tile
    ],
)
def test_when_to_tile(mode, size, tiled):
    assert should_tile(mode, size, (416, 416)) is tiled


@pytest.mark.parametrize("size", [(3300, 2500), (1000, 417), (416, 416), (5000, 300)])
def test_tiles_cover_the_photo_with_the_overlap_asked(size):
    tiles = tile_grid(size, (416, 416), overlap=0.2)
    covered = np.zeros(size[::-1], dtype=bool)
    for tile in tiles:
        assert tile.x >= 0 and tile.y >= 0 and tile.x + tile.width <= size[0] and tile.y + tile.height <= size[1]
        covered[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width] = True
    assert covered.all()
    xs = sorted({t.x for t in tiles})
    assert all(b - a <= 416 * 0.8 for a, b in itertools.pairwise(xs))  # >= 20% overlap


def test_boxes_cut_by_an_inner_border_are_dropped():
    tile = Tile(400, 0, 416, 416)  # inner borders left and right; top is the photo's edge
    boxes = np.array(
        [[0, 100, 30, 30], [200, 0, 30, 30], [400, 100, 16, 30], [100, 100, 30, 30]],
        dtype=np.float32,
    )
    kept = drop_cut_boxes(Candidates(boxes, np.ones((4, 1), np.float32)), tile, (2000, 416))
    assert kept.boxes.tolist() == [[200, 0, 30, 30], [100, 100, 30, 30]]


def test_nested_boxes_merge_where_a_tile_found_them():
    boxes = np.array([[100, 100, 70, 98], [120, 110, 30, 70]], dtype=np.float64)
    scores, classes = np.array([0.5, 0.6]), np.array([0, 0])
    assert classwise_nms(boxes, scores, classes, 0.45).tolist() == [1, 0]  # IoU 0.3: both stay
    two_tiles = np.array([1, 2])
    assert classwise_nms(boxes, scores, classes, 0.45, 0.5, two_tiles).tolist() == [1]
    # Both from the whole-photo pass: as without tiling (a foal inside its mare's box stays).
    whole_photo = np.array([0, 0])
    assert classwise_nms(boxes, scores, classes, 0.45, 0.5, whole_photo).tolist() == [1, 0]


def nine_small_dogs() -> np.ndarray:
    """2200x1700: nine dog.jpg shrunk to 240x180 on a grid whose spacing (770 x 590)
    lines up with no tile stride: three of them are cut by the border of every tile
    (35 tiles at 416; the 3300x2500 photo with sixteen took 80 for the same cases)."""
    small = cv2.resize(photo_rgb("dog.jpg"), (240, 180), interpolation=cv2.INTER_AREA)
    canvas = np.full((1700, 2200, 3), 128, dtype=np.uint8)
    for row in range(3):
        for column in range(3):
            x, y = 150 + column * 770, 120 + row * 590
            canvas[y : y + 180, x : x + 240] = small
    return canvas


def test_small_objects_on_a_big_photo_are_counted_once_each(detector):
    canvas = nine_small_dogs()
    started = time.perf_counter()
    whole = count_by_class(detector.detect(canvas, DetectOptions(tiling="off")), detector.class_names)
    whole_s = time.perf_counter() - started
    started = time.perf_counter()
    tiled = count_by_class(detector.detect(canvas), detector.class_names)  # auto: 2200 > 2 x 416
    tiled_s = time.perf_counter() - started
    print(f"9 dogs: whole image {whole['dog']} in {whole_s:.2f} s, tiled {tiled['dog']} in {tiled_s:.2f} s")
    assert whole["dog"] == 0  # squeezed into 416 px, they are too small to see
    assert 8 <= tiled["dog"] <= 9


def test_small_photos_are_not_tiled(detector):
    image = photo_rgb("dog.jpg")
    assert detector.detect(image) == detector.detect(image, DetectOptions(tiling="off"))


def test_tiling_finds_the_small_kites_and_people(detector):
    image = photo_rgb("kite.jpg")  # 1352x900: tiled on a 416 network
    whole = count_by_class(detector.detect(image, DetectOptions(tiling="off")), detector.class_names)
    tiled = count_by_class(detector.detect(image), detector.class_names)
    assert tiled["kite"] > whole["kite"] and tiled["person"] > whole["person"]
