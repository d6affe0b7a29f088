"""A big photo made of the data/ photos on a flat background: most of its tiles hold
nothing, as a dish around a drop, and what the photos hold is what the demo model
counts. The tile-skipping tests and bench/tile_skipping.py use it.
"""

from __future__ import annotations

import cv2
import numpy as np

from .framed_photos import ROOT

WHITE = (245, 245, 245)
# Each photo's top-left corner on a 4000x3000 canvas, gaps of a tile or more between them.
PLACES = {
    "dog.jpg": (150, 150),
    "eagle.jpg": (1500, 200),
    "giraffe.jpg": (3100, 300),
    "horses.jpg": (200, 1500),
    "kite.jpg": (1500, 1400),
    "person.jpg": (3200, 2400),
}


def composite(
    background: tuple[int, int, int] = WHITE, size: tuple[int, int] = (4000, 3000), scale: float = 1.0
) -> np.ndarray:
    """RGB: the data/ photos at PLACES (both scaled by `scale`) on a plain `background`."""
    width, height = round(size[0] * scale), round(size[1] * scale)
    canvas = np.full((height, width, 3), background, np.uint8)
    for name, (x, y) in PLACES.items():
        photo = cv2.cvtColor(cv2.imread(str(ROOT / "data" / name)), cv2.COLOR_BGR2RGB)
        if scale != 1.0:
            photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        left, top = round(x * scale), round(y * scale)
        part = canvas[top : top + photo.shape[0], left : left + photo.shape[1]]
        part[...] = photo[: part.shape[0], : part.shape[1]]
    return canvas
