"""Auto-crop to the sample, as the original service did: the culture drop (iodine-
stained, saturated) on a white or dark dish is what is counted. The original's method:
pixels of HSV saturation below 100 count as background, the largest external contour
of the rest is the sample, and its bounding rectangle the crop. Fewer tiles run, and
nothing outside the drop is counted.

The mask is made on a copy at most MASK_SIDE pixels a side (a 12 MP photo in a few
milliseconds); the rectangle is scaled back and widened by one step of that scale, so
it holds the whole drop.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SATURATION_FLOOR = 100  # the original's threshold, on OpenCV's 0-255 saturation
MASK_SIDE = 1024
MIN_SHARE = 0.01  # a "sample" smaller than this share of the photo is noise: no crop
MAX_SHARE = 0.95  # one that fills the frame is the whole photo: no crop


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    width: int
    height: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.width, self.height]


@dataclass(frozen=True)
class Sample:
    crop: Crop
    # The sample's outline, (N, 2) x, y in the photo's pixels: a round drop leaves its
    # rectangle's corners empty, and tiles there are not run (tile_skipping.py).
    outline: np.ndarray


def find_sample(image: np.ndarray) -> Crop | None:
    """The sample's bounding rectangle in the photo's pixels, or None when there is no
    saturated region or it fills the frame (count the whole photo)."""
    sample = locate_sample(image)
    return sample.crop if sample else None


def locate_sample(image: np.ndarray) -> Sample | None:
    """The sample's rectangle and outline, or None as find_sample."""
    height, width = image.shape[:2]
    scale = min(1.0, MASK_SIDE / max(height, width))
    # Each side at least one mask pixel: a photo of 2048:1 or thinner would shrink to none.
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image
    saturation = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)[:, :, 1]
    mask = np.where(saturation >= SATURATION_FLOOR, 255, 0).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    x, y, w, h = cv2.boundingRect(largest)
    along_x, along_y = width / small.shape[1], height / small.shape[0]  # photo pixels per mask pixel
    step_x, step_y = int(np.ceil(along_x)), int(np.ceil(along_y))
    left, top = max(0, int(x * along_x) - step_x), max(0, int(y * along_y) - step_y)
    right, bottom = min(width, int((x + w) * along_x) + step_x), min(height, int((y + h) * along_y) + step_y)
    share = (right - left) * (bottom - top) / (width * height)
    if not MIN_SHARE <= share <= MAX_SHARE:
        return None
    points = largest.reshape(-1, 2) * np.array([along_x, along_y])
    return Sample(Crop(left, top, right - left, bottom - top), points)


def outline(picture_bgr: np.ndarray, crop: Crop) -> None:
    """The crop drawn on the annotated photo: what was counted, and what was not."""
    thickness = max(2, round(max(picture_bgr.shape[:2]) / 400))
    corner = (crop.x + crop.width - 1, crop.y + crop.height - 1)
    cv2.rectangle(picture_bgr, (crop.x, crop.y), corner, (255, 255, 255), thickness + 2)
    cv2.rectangle(picture_bgr, (crop.x, crop.y), corner, (40, 40, 40), thickness)
