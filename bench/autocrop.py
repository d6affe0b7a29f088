"""Auto-crop on a framed photo: tiles and time with and without it.

    python -m bench.autocrop [--model-dir aimodel] [--photo PATH] [--runs 5]

Without --photo, a 4000x3000 photo made like the job's: an amber (iodine-stained)
drop on a white dish with twelve dogs from dog.jpg inside (the tests use the same).
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from app.inference.detector import build_detector
from app.pipeline import PhotoLimits, process_photo
from app.settings import Settings, available_cores
from app.vision.autocrop import find_sample
from app.vision.detection import DetectOptions
from app.vision.images import decode_image
from app.vision.tiling import should_tile, tile_grid

from .report import ms, table

ROOT = Path(__file__).resolve().parents[1]
DROP = (700, 450, 2600, 2100)  # x, y, width, height of the drop's bounding box
AMBER = (205, 130, 40)  # iodine-stained culture: saturation 0.8
DOGS = 12


def framed_photo(surround: tuple[int, int, int], size=(4000, 3000), drop=DROP) -> np.ndarray:
    """A drop (an ellipse filling `drop`) on a plain dish, with twelve dogs inside, each
    130x200: small enough that a tile's overlap sees each whole, as organisms are."""
    photo = np.full((size[1], size[0], 3), surround, np.uint8)
    x, y, w, h = drop
    cv2.ellipse(photo, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, AMBER, -1)
    dog_photo = cv2.cvtColor(cv2.imread(str(ROOT / "data" / "dog.jpg")), cv2.COLOR_BGR2RGB)
    dog = cv2.resize(dog_photo[200:560, 110:340], (130, 200))
    for dx in (-600, -200, 200, 600):
        for dy in (-500, 0, 400):
            left, top = x + w // 2 + dx, y + h // 2 + dy
            photo[top : top + 200, left : left + 130] = dog
    return photo


def jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "aimodel")
    parser.add_argument("--photo", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    settings = Settings(model_dir=args.model_dir, engine_threads=available_cores())
    detector = build_detector(settings)
    photo = args.photo.read_bytes() if args.photo else jpeg(framed_photo((250, 250, 248)))
    image = decode_image(photo, settings.max_image_pixels)
    network = (detector.model.network.width, detector.model.network.height)
    rows = []
    for name, crop_it in (("whole photo", False), ("auto-crop", True)):
        samples, found, crop = [], {}, None
        for _ in range(args.runs + 1):  # the first run warms up
            result = process_photo(
                photo, detector, DetectOptions(), PhotoLimits(settings.max_image_pixels), auto_crop=crop_it
            )
            samples.append(result.stage_seconds["inference"])  # finding the sample included
            crop, found = result.crop, {k: v for k, v in result.counts.items() if v}
        size = (crop.width, crop.height) if crop else (image.shape[1], image.shape[0])
        tiles = len(tile_grid(size, network)) if should_tile("auto", size, network) else 0
        rows.append((name, f"{size[0]}x{size[1]}", str(tiles), ms(float(np.median(samples[1:])) * 1000), str(found)))
    started = time.perf_counter()
    find_sample(image)
    finding = (time.perf_counter() - started) * 1000
    what = args.photo.name if args.photo else "a framed 4000x3000 photo (white dish, amber drop, 12 dogs)"
    print(f"### Auto-crop: {what}, {detector.model.network.width}px network, median of {args.runs}\n")
    print(table(("counted", "region", "tiles", "ms", "counts"), rows))
    print(f"\nfinding the sample: {finding:.1f} ms")


if __name__ == "__main__":
    main()
