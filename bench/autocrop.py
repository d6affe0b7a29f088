"""Auto-crop on a framed photo: tiles and time with and without it.

    python -m bench.autocrop [--model-dir aimodel] [--photo PATH] [--runs 5]

Without --photo, a 4000x3000 photo made like the job's: an amber (iodine-stained)
drop on a white dish with twelve dogs from dog.jpg inside (the tests use the same).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from app.inference.detector import build_detector
from app.pipeline import PhotoLimits, process_photo
from app.settings import Settings, available_cores
from app.vision.autocrop import find_sample
from app.vision.detection import DetectOptions
from app.vision.images import decode_image
from app.vision.tiling import should_tile, tile_grid
from synthetic.framed_photos import ROOT, framed_photo, jpeg

from .report import ms, table


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
