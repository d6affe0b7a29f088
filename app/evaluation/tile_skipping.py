"""Whether skipping tiles changed a count, on the lab's own photos and model: each photo
where a tile was skipped is counted again with every tile run, and the contrast under
the faintest box counted says how far above TILE_CONTRAST_FLOOR the model's weakest
detection lies (app/vision/tile_skipping.py). evaluate and calibrate print it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.inference.detector import Detector
from app.pipeline import PhotoResult
from app.vision.tile_skipping import contrast_cells, region_contrast


@dataclass
class SkippingCheck:
    floor: float  # the detector's TILE_CONTRAST_FLOOR
    threshold: float  # the score a box needs to be counted
    photos: int = 0
    tiles_run: int = 0
    tiles_skipped: int = 0
    compared: int = 0  # photos counted again with every tile run
    changed: list[str] = field(default_factory=list)  # photos whose counts changed
    faintest: int | None = None  # the lowest contrast under a counted box

    def add(
        self, name: str, image: np.ndarray, result: PhotoResult, every_tile: Callable[[], PhotoResult] | None
    ) -> None:
        """One photo counted as the service counts it; every_tile counts it again with
        every tile run (called only where a tile was skipped)."""
        self.photos += 1
        self.tiles_run += result.tiles.run
        self.tiles_skipped += result.tiles.skipped
        counted = [d for d in result.detections if d.confidence > self.threshold]
        if counted:
            cells = contrast_cells(image)
            size = (image.shape[1], image.shape[0])
            faintest = min(region_contrast(cells, d.box, size) for d in counted)
            self.faintest = faintest if self.faintest is None else min(self.faintest, faintest)
        if result.tiles.skipped and every_tile is not None:
            self.compared += 1
            if _counts(counted) != _counts(d for d in every_tile().detections if d.confidence > self.threshold):
                self.changed.append(name)

    def summary(self) -> str:
        if not self.tiles_run + self.tiles_skipped:
            return "tile skipping: no photo was tiled"
        line = f"tile skipping (TILE_CONTRAST_FLOOR {self.floor:g}): {self.tiles_run} tiles run, "
        if self.tiles_skipped:
            same = self.compared - len(self.changed)
            line += (
                f"{self.tiles_skipped} skipped on {self.photos} photos; counts at threshold {self.threshold:g} the "
                f"same as with every tile run on {same} of {self.compared} photos with a tile skipped"
            )
        else:
            line += f"none skipped on {self.photos} photos"
        if self.changed:
            line += f" (changed: {', '.join(self.changed[:5])}: lower TILE_CONTRAST_FLOOR, 0 runs every tile)"
        if self.faintest is not None:
            margin = f", {self.faintest / self.floor:.1f}x the floor" if self.floor > 0 else ""
            line += f"; the faintest box counted lies on contrast {self.faintest}{margin}"
        return line

    def as_dict(self) -> dict:
        return {
            "floor": self.floor,
            "threshold": self.threshold,
            "photos": self.photos,
            "tiles_run": self.tiles_run,
            "tiles_skipped": self.tiles_skipped,
            "photos_compared": self.compared,
            "photos_changed": self.changed,
            "faintest_box_contrast": self.faintest,
        }


def every_tile(detector: Detector) -> Detector:
    """The same engine, running every tile (TILE_CONTRAST_FLOOR=0)."""
    return Detector(detector.engine, detector.model, tile_overlap=detector.tile_overlap, tile_contrast_floor=0.0)


def _counts(detections) -> dict[str, int]:
    counts: dict[str, int] = {}
    for detection in detections:
        counts[detection.class_name] = counts.get(detection.class_name, 0) + 1
    return counts
