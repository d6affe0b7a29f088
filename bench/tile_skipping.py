"""Tiles that cannot hold an object: the contrast floor measured for the model, and the
tiles and time saved by skipping the others.

    python -m bench.tile_skipping [--model-dir aimodel] [--photo PATH ...] [--runs 3]
        [--thresholds 0.05,0.25] [--skip-floor] [--skip-timing]

Floor: every tile of the data/ photos, the labelled synthetic photos, a framed drop, a
data/ composite and each --photo is run at each threshold (tiling on, every tile).
For each tile that gives a box over the threshold (after its cut boxes are dropped, as
the service drops them) it reports the tile's contrast and that under the box, then
fades the tile toward its mean colour (mean + k x (tile - mean), k halved in steps,
then bisected) to the weakest contrast at which a box still passes: what the model's
weakest detection needs. The floor should be well below the lowest of these.

Plain tiles (a dish's colour, a stain, black, with up to a level of noise): their
contrast and the best score of any class on them, what a skipped tile could hold.

Timing: a framed drop (4000x3000, white dish), a data/ composite (4000x3000, white) and
each --photo (with and without auto-crop), counted with the service's floor and with
every tile run (TILE_CONTRAST_FLOOR=0), alternating, --runs times each: tiles run and
skipped, wall and CPU time per photo (medians), and whether the counts are the same.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from app.evaluation.tile_skipping import every_tile
from app.inference.detector import Detector, build_detector
from app.pipeline import PhotoLimits, process_photo
from app.settings import Settings, available_cores
from app.vision.detection import DetectOptions
from app.vision.images import decode_image
from app.vision.postprocess import best_class
from app.vision.tile_skipping import contrast_cells, region_contrast, tiles_to_run
from app.vision.tiling import drop_cut_boxes, should_tile, tile_grid
from synthetic.composite_photos import composite
from synthetic.framed_photos import ROOT, framed_photo, jpeg
from synthetic.labelled_photos import PLANS, make_photo

from .machine import describe_machine
from .report import progress, table

LOW = DetectOptions(threshold=0.05)  # the lowest threshold evaluate's count-optimal search chooses
HALVINGS, BISECTIONS = 6, 3  # the weakest contrast found within 1/8 of the step where boxes stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "aimodel")
    parser.add_argument("--photo", type=Path, action="append", default=[], help="a photo of the job (repeatable)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--thresholds", default="0.05,0.25")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    settings = Settings.for_one_process({"MODEL_DIR": str(args.model_dir)})
    detector = build_detector(settings)
    print(f"{describe_machine()}; {detector.engine.name} {detector.engine.precision}, {available_cores()} threads")
    print(f"TILE_CONTRAST_FLOOR {detector.tile_contrast_floor:g}, network {detector.model.network.width}px\n")
    if not args.skip_floor:
        thresholds = [float(t) for t in args.thresholds.split(",")]
        measure_floor(detector, floor_photos(args.photo), thresholds)
        measure_flat(detector)
    if not args.skip_timing:
        measure_time(detector, settings, timing_photos(args.photo), args.runs)


def floor_photos(extra: list[Path]) -> dict[str, np.ndarray]:
    """RGB photos whose tiles the floor is measured on."""
    photos = {path.name: _rgb(path) for path in sorted((ROOT / "data").glob("*.jpg"))}
    for name, (background, places) in PLANS.items():
        photos[f"synthetic {name}"] = cv2.cvtColor(make_photo(background, places)[0], cv2.COLOR_BGR2RGB)
    photos["framed drop"] = framed_photo((250, 250, 248))
    photos["data/ composite"] = composite()
    photos |= {path.name: _rgb(path) for path in extra}
    return photos


def measure_floor(detector: Detector, photos: dict[str, np.ndarray], thresholds: list[float]) -> None:
    network = (detector.model.network.width, detector.model.network.height)
    lowest = min(thresholds)
    rows, weakest = [], {t: [] for t in thresholds}
    for name, image in photos.items():
        progress(f"floor: {name}")
        size = (image.shape[1], image.shape[0])
        tiles = tile_grid(size, network) if should_tile("on", size, network) else []
        cells = contrast_cells(image)
        found = {t: [] for t in thresholds}  # (tile contrast, box contrast, faded contrast)
        for tile in tiles:
            crop = image[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width]
            candidates = drop_cut_boxes(detector.engine.predict(crop, min_score=lowest), tile, size)
            scores = best_class(candidates.scores)[1] if len(candidates.boxes) else np.zeros(0)
            tile_contrast = region_contrast(cells, (tile.x, tile.y, tile.width, tile.height), size)
            for threshold in thresholds:
                passing = scores > threshold
                if not passing.any():
                    continue
                boxes = candidates.boxes[passing] + [tile.x, tile.y, 0, 0]
                under = min(region_contrast(cells, _clipped(box, size), size) for box in boxes)
                faded = _weakest_faded(detector, crop, tile, size, threshold)
                found[threshold].append((tile_contrast, under, faded))
        for threshold in thresholds:
            entries = found[threshold]
            weakest[threshold] += entries
            rows.append(_floor_row(name, threshold, len(tiles), entries))
    print(f"### Contrast a box needs: every tile run, tiling on, {network[0]}px tiles\n")
    header = ("photo", "threshold", "tiles", "with a box", "lowest tile contrast", "lowest under a box", "faded")
    print(table(header, rows))
    print()
    for threshold, entries in weakest.items():
        if entries:
            tile, under, faded = (min(column) for column in zip(*entries, strict=True))
            print(
                f"- threshold {threshold:g}: {len(entries)} tiles gave a box; the lowest tile contrast with one "
                f"{tile}, under a box {under}, faded until none passed {faded}"
            )
    print()


# Plain dishes, stains and the darkest backgrounds, with sensor noise up to what still
# measures under the default floor.
FLAT_COLOURS = ((250, 250, 248), (245, 245, 245), (128, 128, 128), (205, 130, 40), (12, 12, 14), (255, 255, 255))


def measure_flat(detector: Detector) -> None:
    """The best score of any class on tiles under the floor: what skipping them could
    lose at the lowest thresholds (evaluate keeps candidates from 0.005)."""
    network = (detector.model.network.width, detector.model.network.height)
    rng = np.random.default_rng(0)
    rows = []
    for colour in FLAT_COLOURS:
        for noise in (0.0, 0.5, 1.0):
            tile = np.full((network[1], network[0], 3), colour, np.float32) + rng.normal(0, noise, (*network[::-1], 3))
            tile = np.clip(np.round(tile), 0, 255).astype(np.uint8)
            contrast = region_contrast(contrast_cells(tile), (0, 0, *network), network)
            scores = detector.engine.predict(tile, min_score=0.0).scores
            best = float(scores.max()) if scores.size else 0.0
            rows.append((str(colour), f"{noise:g}", str(contrast), f"{best:.4f}"))
    print("### Plain tiles: the best score of any class\n")
    print(table(("colour", "noise (levels)", "contrast", "best score"), rows))
    print()


def _weakest_faded(detector: Detector, crop: np.ndarray, tile, size, threshold: float) -> int:
    """The lowest contrast (of the tile, faded toward its mean colour) at which a box still passes."""
    mean = crop.reshape(-1, 3).mean(axis=0)

    def contrast_if_found(k: float) -> int | None:
        faded = np.clip(np.round(mean + k * (crop.astype(np.float32) - mean)), 0, 255).astype(np.uint8)
        candidates = drop_cut_boxes(detector.engine.predict(faded, min_score=threshold), tile, size)
        if not len(candidates.boxes) or not (best_class(candidates.scores)[1] > threshold).any():
            return None
        return region_contrast(contrast_cells(faded), (0, 0, tile.width, tile.height), (tile.width, tile.height))

    weakest = [contrast_if_found(1.0)]
    low, high = 0.0, 1.0
    for _ in range(HALVINGS):
        contrast = contrast_if_found(high / 2)
        if contrast is None:
            low = high / 2
            break
        high = high / 2
        weakest.append(contrast)
    for _ in range(BISECTIONS):
        k = (low + high) / 2
        contrast = contrast_if_found(k)
        if contrast is None:
            low = k
        else:
            high = k
            weakest.append(contrast)
    return min((c for c in weakest if c is not None), default=-1)


def _floor_row(name: str, threshold: float, tiles: int, entries: list) -> tuple[str, ...]:
    if not entries:
        return (name, f"{threshold:g}", str(tiles), "0", "-", "-", "-")
    tile, under, faded = (min(column) for column in zip(*entries, strict=True))
    return (name, f"{threshold:g}", str(tiles), str(len(entries)), str(tile), str(under), str(faded))


def _clipped(box, size) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in box)
    left, top = max(0.0, x), max(0.0, y)
    return left, top, max(1.0, min(size[0], x + w) - left), max(1.0, min(size[1], y + h) - top)


def timing_photos(extra: list[Path]) -> dict[str, tuple[bytes, bool]]:
    """JPEG bytes and whether to auto-crop."""
    photos = {
        "framed drop 4000x3000 (white dish)": (jpeg(framed_photo((250, 250, 248))), False),
        "data/ composite 4000x3000 (white)": (jpeg(composite()), False),
    }
    for path in extra:
        photos[path.name] = (path.read_bytes(), False)
        photos[f"{path.name}, auto-crop"] = (path.read_bytes(), True)
    return photos


def measure_time(detector: Detector, settings: Settings, photos: dict[str, tuple[bytes, bool]], runs: int) -> None:
    both = {"skipping": detector, "every tile": every_tile(detector)}
    limits = PhotoLimits(settings.max_image_pixels)
    rows, measured = [], []
    for name, (data, auto_crop) in photos.items():
        progress(f"timing: {name}")
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label in both}
        results = {}
        process_photo(data, detector, DetectOptions(), limits, auto_crop=auto_crop)  # warm-up
        for _ in range(runs):
            for label, which in both.items():  # alternating
                wall, cpu = time.perf_counter(), time.process_time()
                results[label] = process_photo(data, which, DetectOptions(), limits, auto_crop=auto_crop)
                samples[label].append((time.perf_counter() - wall, time.process_time() - cpu))
        # More boxes to lose at the lowest threshold in use: counted once more each, untimed.
        low = [process_photo(data, which, LOW, limits, auto_crop=auto_crop).counts for which in both.values()]
        for label, result in results.items():
            wall = statistics.median(s[0] for s in samples[label])
            cpu = statistics.median(s[1] for s in samples[label])
            tiles = result.tiles
            rows.append(
                (name, label, str(tiles.run), str(tiles.skipped), f"{wall:.2f}", f"{cpu:.2f}", _found(result.counts))
            )
        same = results["skipping"].counts == results["every tile"].counts
        rows.append((name, "counts the same", _yes(same), "", "", "", ""))
        rows.append((name, f"the same at {LOW.threshold:g}", _yes(low[0] == low[1]), "", "", "", _found(low[0])))
        measured.append((name, _measure_ms(data, detector, limits)))
    print(f"### Tiles skipped: median of {runs} alternating runs, threshold 0.25\n")
    print(table(("photo", "tiles", "run", "skipped", "wall s", "CPU s", "counts"), rows))
    print()
    for name, ms in measured:
        print(f"- {name}: every tile's contrast measured in {ms:.0f} ms (median of 5)")
    print()


def _found(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items() if count) or "nothing"


def _yes(same: bool) -> str:
    return "yes" if same else "NO"


def _measure_ms(data: bytes, detector: Detector, limits: PhotoLimits) -> float:
    """What deciding costs: the contrast of every tile of the decoded photo."""
    image = decode_image(data, limits.max_pixels)
    network = (detector.model.network.width, detector.model.network.height)
    tiles = tile_grid((image.shape[1], image.shape[0]), network, detector.tile_overlap)
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        tiles_to_run(image, tiles, detector.tile_contrast_floor)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


if __name__ == "__main__":
    main()
