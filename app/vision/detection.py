"""The value objects that flow from an engine to the HTTP response."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.25  # darknet's Python API defaults
DEFAULT_NMS = 0.45


@dataclass(frozen=True)
class Detection:
    """One object: exactly one class, its score, and its box in image pixels."""

    class_id: int
    class_name: str
    confidence: float
    box: tuple[float, float, float, float]  # x, y, width, height; top-left origin


@dataclass(frozen=True)
class DetectOptions:
    threshold: float = DEFAULT_THRESHOLD
    nms: float = DEFAULT_NMS
    classes: frozenset[int] | None = None  # class ids to keep; None keeps all
    tiling: str = "auto"  # auto | on | off, see tiling.py


@dataclass(frozen=True)
class Candidates:
    """Raw engine output mapped to image pixels, before thresholding and NMS.

    boxes: (N, 4) float x, y, width, height; scores: (N, classes) class-specific
    scores, that is objectness x class probability as darknet computes them.
    """

    boxes: np.ndarray
    scores: np.ndarray
    passes: np.ndarray | None = None  # tiled inference: which pass (tile) found each box
