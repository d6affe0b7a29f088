"""The photo set `python -m app calibrate` uses when no lab photos are given.

    python -m synthetic.calibration_photos DIR

The six sample photos of data/ hold about 35 boxes of the demo model: too few for a
gate (one lost box moves the agreement by 3-4%). This makes more from them, on the fly:
each photo as it is, mirrored, at 3/4, 5/4 and 3/2 of its size (mirrored too), and 2x2
mosaics of four of them at half size: 63 photos, about 430 boxes, 120 of them on the
held-out photos. Only the largest (kite, scaled up) are tiled, as the service would.

Variants of one photo are not independent of each other: a mirrored dog held out is
no stranger to a calibration that saw the dog. The set exists so that a demo model
has a gate that is not two boxes wide; a lab's own photos (`--photos DIR`) are the
real measure.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data"
SCALES = (0.75, 1.25, 1.5)
MOSAIC_CELL = (416, 312)  # width, height of each quarter: the mosaic is 832x624


def _samples(directory: Path) -> dict[str, np.ndarray]:
    return {path.stem: cv2.imread(str(path)) for path in sorted(directory.glob("*.jpg"))}


def calibration_photos(directory: Path = SAMPLES) -> dict[str, np.ndarray]:
    """name -> photo (BGR), made from the .jpg photos in directory."""
    samples = _samples(directory)
    photos: dict[str, np.ndarray] = {}
    for name, photo in samples.items():
        photos[f"{name}.jpg"] = photo
        photos[f"{name}-mirrored.jpg"] = cv2.flip(photo, 1)
        for scale in SCALES:
            size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
            scaled = cv2.resize(photo, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            photos[f"{name}-x{scale:g}.jpg"] = scaled
            photos[f"{name}-x{scale:g}-mirrored.jpg"] = cv2.flip(scaled, 1)
    for number, four in enumerate(itertools.combinations(sorted(samples), 4)):
        cells = [cv2.resize(samples[name], MOSAIC_CELL, interpolation=cv2.INTER_AREA) for name in four]
        mosaic = np.vstack([np.hstack(cells[:2]), np.hstack(cells[2:])])
        photos[f"mosaic-{number:02d}.jpg"] = mosaic if number % 2 == 0 else cv2.flip(mosaic, 1)
    return photos


def write_calibration_photos(directory: Path, source: Path = SAMPLES) -> int:
    """Writes the set into directory (a temporary one: never data/); returns the count."""
    directory.mkdir(parents=True, exist_ok=True)
    photos = calibration_photos(source)
    for name, photo in photos.items():
        if (source / name).is_file():  # a sample as it is: its own bytes, not a second JPEG
            shutil.copyfile(source / name, directory / name)
        else:
            cv2.imwrite(str(directory / name), photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return len(photos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    print(f"{write_calibration_photos(args.directory)} photos in {args.directory}")


if __name__ == "__main__":
    main()
