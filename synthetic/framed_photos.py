"""A framed photo made like the job's: an amber (iodine-stained) drop on a plain dish
with twelve dogs from dog.jpg inside. The auto-crop tests and bench/autocrop.py use it.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DROP = (700, 450, 2600, 2100)  # x, y, width, height of the drop's bounding box
AMBER = (205, 130, 40)  # iodine-stained culture: saturation 0.8
DOGS = 12


def framed_photo(surround: tuple[int, int, int], size=(4000, 3000), drop=DROP) -> np.ndarray:
    """A drop (an ellipse filling `drop`) on a plain dish, with twelve dogs inside, each
    130x200: small enough that a tile's overlap sees each whole, as organisms are. A
    smaller drop brings the dogs closer together; the dogs keep their size."""
    photo = np.full((size[1], size[0], 3), surround, np.uint8)
    x, y, w, h = drop
    cv2.ellipse(photo, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, AMBER, -1)
    dog_photo = cv2.cvtColor(cv2.imread(str(ROOT / "data" / "dog.jpg")), cv2.COLOR_BGR2RGB)
    dog = cv2.resize(dog_photo[200:560, 110:340], (130, 200))
    for dx in (-600, -200, 200, 600):
        for dy in (-500, 0, 400):
            left, top = x + w // 2 + dx * w // DROP[2], y + h // 2 + dy * h // DROP[3]
            photo[top : top + 200, left : left + 130] = dog
    return photo


def jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()
