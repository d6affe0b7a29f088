"""Tiled inference on photos much larger than the network input: pure functions on
sizes and boxes (no engine), as SAHI's slicing.

Organisms of 10-30 px on a 3000 px photo vanish when the whole photo is squeezed into
one 416-832 px network input. Network-sized tiles at full resolution keep them
visible; a box cut by a tile's inner border is dropped when the overlap lets the
neighbouring tile see the object whole, so an organism on a seam counts once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detection import Candidates

TILING_MODES = ("auto", "on", "off")
DEFAULT_OVERLAP = 0.2
# Boxes this close to an inner tile border (fraction of the tile side) count as cut.
CUT_MARGIN = 0.01
# Merging across tiles: a box mostly inside a better box of its class is the same
# organism seen with other context (SAHI merges on intersection over smaller too).
MERGE_IOS = 0.5
# TILE_CONTRAST_FLOOR's default, in 0-255 levels of tile_skipping.py's contrast, measured
# (not guessed) with `python -m bench.tile_skipping` (docs/performance.md; 2-core Xeon,
# class amx): the demo model at threshold 0.05 on every tile of the data/ photos, the
# labelled synthetic photos, a framed drop, a data/ composite and the job's culture
# photo. The faintest tile that still gave a box, faded toward its mean colour, measured
# 14; the faintest region under a box 12. 4 is a third of that. A flat dish in a JPEG
# measures 0; sensor noise of 2 levels a pixel already 4 or more. For a model of your
# own, evaluate and calibrate print the contrast under its faintest counted box.
DEFAULT_CONTRAST_FLOOR = 4.0


@dataclass(frozen=True)
class Tile:
    x: int
    y: int
    width: int
    height: int


def should_tile(mode: str, image_size: tuple[int, int], network_size: tuple[int, int]) -> bool:
    """auto: only photos more than twice the network input on a side."""
    if mode == "off":
        return False
    width, height = image_size
    net_w, net_h = network_size
    if mode == "on":
        return width > net_w or height > net_h
    return width > 2 * net_w or height > 2 * net_h


def tile_grid(image_size: tuple[int, int], tile_size: tuple[int, int], overlap: float = DEFAULT_OVERLAP) -> list[Tile]:
    """Tiles of tile_size covering the image, neighbours overlapping by at least
    `overlap` of a tile; the last row and column end on the image border."""
    xs = _starts(image_size[0], tile_size[0], overlap)
    ys = _starts(image_size[1], tile_size[1], overlap)
    width, height = min(tile_size[0], image_size[0]), min(tile_size[1], image_size[1])
    return [Tile(x, y, width, height) for y in ys for x in xs]


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1 - overlap)))
    count = -(-(length - tile) // stride) + 1  # enough tiles that the last reaches the end
    # Spread the tiles evenly, so the overlap is never smaller than asked.
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def drop_cut_boxes(candidates: Candidates, tile: Tile, image_size: tuple[int, int]) -> Candidates:
    """Leave out boxes touching an inner border of the tile (x, y, w, h in tile pixels):
    the object goes on beyond it, and the neighbour or the whole-image pass sees it."""
    boxes = candidates.boxes
    margin_x, margin_y = CUT_MARGIN * tile.width, CUT_MARGIN * tile.height
    cut = np.zeros(len(boxes), dtype=bool)
    if tile.x > 0:
        cut |= boxes[:, 0] <= margin_x
    if tile.y > 0:
        cut |= boxes[:, 1] <= margin_y
    if tile.x + tile.width < image_size[0]:
        cut |= boxes[:, 0] + boxes[:, 2] >= tile.width - margin_x
    if tile.y + tile.height < image_size[1]:
        cut |= boxes[:, 1] + boxes[:, 3] >= tile.height - margin_y
    return Candidates(boxes[~cut], candidates.scores[~cut])


def to_image(candidates: Candidates, tile: Tile) -> Candidates:
    boxes = candidates.boxes.copy()
    boxes[:, 0] += tile.x
    boxes[:, 1] += tile.y
    return Candidates(boxes, candidates.scores)


def merge(parts: list[Candidates]) -> Candidates:
    """All passes' candidates together, each marked with its pass; the class-wise NMS
    that follows removes the duplicates across passes."""
    return Candidates(
        boxes=np.concatenate([p.boxes for p in parts]).astype(np.float32),
        scores=np.concatenate([p.scores for p in parts]).astype(np.float32),
        passes=np.concatenate([np.full(len(p.boxes), i) for i, p in enumerate(parts)]),
    )
