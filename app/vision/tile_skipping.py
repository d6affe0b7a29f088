"""Which tiles of a tiled photo are worth the engine's time: pure functions on numpy
arrays, as tiling.py. A tile is run when it could hold an object: its contrast reaches
the floor, and (with auto-crop) it reaches the sample. The whole-photo pass always runs.

A tile's contrast: the largest per-channel max - min of the photo's CELL x CELL area
means inside it, made once per photo. An area mean keeps the core of a 10 px organism
(it covers at least two whole cells each way, wherever it lies) and divides sensor and
JPEG noise by CELL (16 pixels averaged). Max - min only grows with the region measured,
so a tile is never less contrasted than any object inside it, or than an object cut by
a neighbour's border (the overlap holds it whole): comparing the floor with the
contrast under the faintest box the model finds (app/evaluation/tile_skipping.py) says
whether any tile that found something would have been skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .tiling import Tile

CELL = 4  # the contrast's cells, in photo pixels each way (DEFAULT_CONTRAST_FLOOR: tiling.py)
# Auto-crop's outline widened by a tenth of a tile (42 px at 416): wider than an organism (10-30 px)
# and the outline's own step (photo pixels per mask pixel), so what lies on the rim,
# in the thin stain at the drop's edge, is run.
SAMPLE_MARGIN = 0.1


@dataclass(frozen=True)
class TileCounts:
    """Tiles the engine ran and tiles left out, for one photo (0, 0: not tiled)."""

    run: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"run": self.run, "skipped": self.skipped}


def contrast_cells(image: np.ndarray) -> np.ndarray:
    """The photo's CELL x CELL area means (int16, a cell per CELL pixels each way, the
    last row and column of cells over what is left)."""
    height, width = image.shape[:2]
    size = (max(1, -(-width // CELL)), max(1, -(-height // CELL)))
    cells = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cells.reshape(size[1], size[0], -1).astype(np.int16)


def cells_under(cells: np.ndarray, box: tuple[float, float, float, float], image_size: tuple[int, int]):
    """The cells a box (x, y, w, h in photo pixels) touches, as slices: every cell with a
    pixel of the box in it, so a region's contrast is never less than its pixels'."""
    rows, columns = cells.shape[:2]
    x, y, w, h = box
    along_x, along_y = columns / image_size[0], rows / image_size[1]
    left, top = int(np.floor(max(0.0, x) * along_x)), int(np.floor(max(0.0, y) * along_y))
    right, bottom = int(np.ceil((x + w) * along_x)), int(np.ceil((y + h) * along_y))
    return slice(min(top, rows - 1), max(top + 1, bottom)), slice(min(left, columns - 1), max(left + 1, right))


def region_contrast(cells: np.ndarray, box: tuple[float, float, float, float], image_size: tuple[int, int]) -> int:
    """Largest per-channel max - min of the cells under a box (a tile, or a detection)."""
    part = cells[cells_under(cells, box, image_size)]
    return int((part.max(axis=(0, 1)) - part.min(axis=(0, 1))).max())


def sample_cells(outline: np.ndarray, image_size: tuple[int, int], cells_shape, margin: float) -> np.ndarray:
    """Cells inside the sample's outline ((N, 2) x, y in photo pixels) or within
    `margin` photo pixels of it."""
    rows, columns = cells_shape[:2]
    scale = np.array([columns / image_size[0], rows / image_size[1]])
    inside = np.zeros((rows, columns), np.uint8)
    points = np.round(np.asarray(outline, np.float64).reshape(-1, 2) * scale).astype(np.int32)
    cv2.fillPoly(inside, [points], 1)
    reach = int(np.ceil(margin * max(scale))) + 1  # +1: the outline's rounding to cells
    return cv2.dilate(inside, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)).astype(bool)


def tiles_to_run(image: np.ndarray, tiles: list[Tile], floor: float, outline: np.ndarray | None = None) -> list[bool]:
    """For each tile: whether it could hold an object (floor 0: every tile runs)."""
    if floor <= 0 or not tiles:
        return [True] * len(tiles)
    size = (image.shape[1], image.shape[0])
    cells = contrast_cells(image)
    boxes = [(t.x, t.y, t.width, t.height) for t in tiles]
    runs = [region_contrast(cells, box, size) >= floor for box in boxes]
    if outline is not None and len(outline) >= 3:
        margin = SAMPLE_MARGIN * max(tiles[0].width, tiles[0].height)
        sample = sample_cells(outline, size, cells.shape, margin)
        runs = [run and bool(sample[cells_under(cells, box, size)].any()) for run, box in zip(runs, boxes, strict=True)]
    return runs
