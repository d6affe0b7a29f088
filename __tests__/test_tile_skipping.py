"""Tiles that cannot hold an object are not run: the contrast measure and the sample's
outline as pure functions, then the real model on photos of the data/ photos and faint
objects on flat backgrounds, and the numbers in the answer and the CSV."""

import csv
import io
import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import photo_rgb

from app.evaluation.tile_skipping import SkippingCheck, every_tile
from app.pipeline import PhotoResult
from app.vision.detection import Detection, DetectOptions
from app.vision.postprocess import count_by_class
from app.vision.tile_skipping import CELL, TileCounts, contrast_cells, region_contrast, tiles_to_run
from app.vision.tiling import DEFAULT_CONTRAST_FLOOR, Tile, tile_grid
from synthetic.composite_photos import composite
from synthetic.framed_photos import jpeg

TILE = (416, 416)


def flat(size=(1600, 1200), colour=(245, 245, 245)) -> np.ndarray:
    return np.full((size[1], size[0], 3), colour, np.uint8)


def whole(tile: Tile) -> tuple[int, int, int, int]:
    return tile.x, tile.y, tile.width, tile.height


@pytest.mark.parametrize("offset", [(0, 0), (1, 2), (2, 3), (3, 1)])
def test_a_10px_object_keeps_its_whole_contrast_wherever_it_lies_on_the_cells(offset):
    """An area mean of CELL x CELL keeps the core of a 10 px organism: it covers two
    whole cells each way at any offset, so the tile's contrast is the object's."""
    image = flat()
    x, y = 200 + offset[0], 200 + offset[1]
    image[y : y + 10, x : x + 10] = (245 - 12, 245 - 20, 245 - 9)  # 20 levels darker in green
    cells = contrast_cells(image)
    assert cells.shape[:2] == (1200 // CELL, 1600 // CELL)
    assert region_contrast(cells, (0, 0, 416, 416), (1600, 1200)) == 20


def test_a_flat_dish_is_skipped_and_noise_is_not_mistaken_for_flat():
    """A flat (or clipped white) dish in a JPEG measures 0; sensor noise of two levels
    a pixel already reaches the floor: such tiles run, as they must where the floor is
    kept below what the model's faintest box needs."""
    tiles = tile_grid((1600, 1200), TILE)
    image = cv2.imdecode(np.frombuffer(jpeg(flat()), np.uint8), cv2.IMREAD_COLOR)
    assert region_contrast(contrast_cells(image), (0, 0, 416, 416), (1600, 1200)) == 0
    assert not any(tiles_to_run(image, tiles, DEFAULT_CONTRAST_FLOOR))
    assert all(tiles_to_run(image, tiles, 0.0))  # 0: every tile runs
    noisy = flat().astype(np.float32) + np.random.default_rng(1).normal(0, 2, (1200, 1600, 3))
    assert all(tiles_to_run(noisy.round().astype(np.uint8), tiles, DEFAULT_CONTRAST_FLOOR))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    size=st.tuples(st.integers(20, 300), st.integers(20, 300)),
    # No subnormal floats: a library in the process (OpenCV) may flush them, hypothesis then refuses.
    box=st.tuples(
        st.floats(0, 1, allow_subnormal=False),
        st.floats(0, 1, allow_subnormal=False),
        st.floats(0.01, 1),
        st.floats(0.01, 1),
    ),
    grow=st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40), st.integers(0, 40)),
)
def test_a_region_is_never_less_contrasted_than_a_box_inside_it(seed, size, box, grow):
    """What makes the floor safe: a tile that holds an object measures at least the
    object's contrast, so a floor below every object's keeps every tile that finds one."""
    image = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    cells = contrast_cells(image)
    x, y = box[0] * (size[0] - 1), box[1] * (size[1] - 1)
    w, h = max(1.0, box[2] * (size[0] - x)), max(1.0, box[3] * (size[1] - y))
    left, top = max(0.0, x - grow[0]), max(0.0, y - grow[1])
    outer = (left, top, min(size[0], x + w + grow[2]) - left, min(size[1], y + h + grow[3]) - top)
    assert region_contrast(cells, outer, size) >= region_contrast(cells, (x, y, w, h), size)


def test_tiles_out_of_the_samples_reach_are_not_run_however_textured():
    """A round drop in its rectangle: the corners are dish, textured enough that contrast
    alone runs them; the outline leaves out the tiles it does not reach."""
    size, radius = (4000, 4000), 2000
    image = np.random.default_rng(2).integers(150, 250, (size[1], size[0], 3), dtype=np.uint8)
    circle = cv2.ellipse2Poly((radius, radius), (radius, radius), 0, 0, 360, 5).astype(np.float64)
    tiles = tile_grid(size, TILE)
    assert all(tiles_to_run(image, tiles, DEFAULT_CONTRAST_FLOOR))
    runs = tiles_to_run(image, tiles, DEFAULT_CONTRAST_FLOOR, circle)
    margin = 0.1 * TILE[0] + 2 * CELL
    for tile, runs_it in zip(tiles, runs, strict=True):
        # How far from the centre the tile's nearest point lies.
        nearest = np.clip([radius, radius], [tile.x, tile.y], [tile.x + tile.width, tile.y + tile.height])
        distance = float(np.hypot(*(nearest - radius)))
        if distance <= radius:
            assert runs_it, tile  # reaches the drop
        elif distance > radius + margin:
            assert not runs_it, tile
    assert runs.count(False) >= 4  # a corner tile or more at each corner
    assert all(tiles_to_run(image, tiles, 0.0, circle))  # 0: every tile runs, outside the sample too


def test_the_check_of_evaluate_and_calibrate_names_a_photo_whose_count_changed():
    image = flat()
    image[100:130, 100:130] = 200  # contrast 45 under the box
    dog = Detection(16, "dog", 0.9, (100.0, 100.0, 30.0, 30.0))
    faint = Detection(16, "dog", 0.3, (600.0, 600.0, 30.0, 30.0))  # on the flat dish: contrast 0
    skipped = PhotoResult("a.jpg", 1600, 1200, (dog,), {"dog": 1}, tiles=TileCounts(run=3, skipped=17))
    every = PhotoResult("a.jpg", 1600, 1200, (dog, faint), {"dog": 2}, tiles=TileCounts(run=20))
    check = SkippingCheck(floor=4.0, threshold=0.25)
    check.add("a.jpg", image, skipped, lambda: every)
    check.add("b.jpg", image, every, lambda: pytest.fail("nothing skipped: not counted again"))
    assert (check.photos, check.tiles_run, check.tiles_skipped, check.compared) == (2, 23, 17, 1)
    assert check.changed == ["a.jpg"] and check.faintest == 0
    assert "on 0 of 1 photos with a tile skipped (changed: a.jpg" in check.summary()


@pytest.fixture(scope="module")
def all_tiles(detector):
    return every_tile(detector)


def counted(detector, image, options=None):
    found = detector.detect_photo(image, options or DetectOptions())
    return count_by_class(found.detections, detector.class_names), found.tiles


@pytest.mark.parametrize("background", [(245, 245, 245), (128, 128, 128)], ids=["white", "grey"])
def test_empty_tiles_of_a_composite_are_skipped_and_the_counts_stay(detector, all_tiles, background):
    image = composite(background, scale=0.75)  # 3000x2250: 63 tiles at 416
    skipping, tiles = counted(detector, image)
    every, all_run = counted(all_tiles, image)
    assert skipping == every and sum(every.values()) >= 10
    assert all_run.skipped == 0 and tiles.run + tiles.skipped == all_run.run == 63
    assert tiles.skipped >= 20, tiles


def faint_dog(contrast_share: float) -> np.ndarray:
    """A 3000x2000 flat grey photo with one dog of dog.jpg (240x180), its colours faded
    toward the background's to contrast_share of their distance from it."""
    small = cv2.resize(photo_rgb("dog.jpg")[200:560, 110:340], (120, 190), interpolation=cv2.INTER_AREA).astype(
        np.float32
    )
    image = flat((3000, 2000), (160, 160, 160))
    image[1000:1190, 1500:1620] = np.clip(160 + contrast_share * (small - 160), 0, 255).astype(np.uint8)
    return image


def test_a_faint_dog_is_still_run_and_counted(detector, all_tiles):
    """The dog faded to a fifth of its contrast, near the faintest the model still finds
    at 0.25 on this background: its tiles run, every other tile is skipped, and the
    count is the one with every tile run."""
    image = faint_dog(0.25)
    contrast = region_contrast(contrast_cells(image), (1500, 1000, 120, 190), (3000, 2000))
    assert DEFAULT_CONTRAST_FLOOR < contrast < 50
    skipping, tiles = counted(detector, image)
    every, _ = counted(all_tiles, image)
    assert skipping["dog"] == every["dog"] == 1 and skipping == every
    assert 1 <= tiles.run <= 4 and tiles.skipped > 40


@pytest.fixture(scope="module")
def white_composite():
    return jpeg(composite(scale=0.5))  # 2000x1500: 30 tiles at 416


def test_the_answer_and_the_csv_say_the_tiles_run_and_skipped(client, white_composite):
    def ask(**params):
        response = client.post("/invocations", data=white_composite, content_type="image/jpeg", query_string=params)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response

    answer = ask(return_image="false").get_json()
    tiles = answer["tiles"]
    assert tiles["run"] + tiles["skipped"] == 30 and tiles["skipped"] > 0
    (row,) = csv.DictReader(io.StringIO(ask(format="csv").get_data(as_text=True)))
    assert (int(row["tiles_run"]), int(row["tiles_skipped"])) == (tiles["run"], tiles["skipped"])
    assert int(row["total"]) == sum(answer["stat"].values())
    assert json.loads(ask(format="jsonl").get_data(as_text=True))["tiles"] == tiles
    assert "tiles" not in ask(tiling="off").get_json()  # not tiled: today's answer
