"""Counting a folder of photos without a server: the same detector, in process.

  python -m app count PATH... [--output counts.csv | --format jsonl]
      [--annotate DIR] [--threshold 0.25] [--tiling auto|on|off]

One row per photo: file, width, height, a count per class, milliseconds; a photo
that cannot be read gets its error in the row and the run goes on. The model is
the service's (MODEL_DIR, BACKEND, ... from the environment).
"""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
import time
from pathlib import Path

from app.inference.detector import build_detector
from app.inference.engines import EngineUnavailable
from app.model.files import ModelError
from app.settings import ConfigError, Settings
from app.vision.annotate import annotate
from app.vision.autocrop import detect_in_sample, outline
from app.vision.detection import DetectOptions
from app.vision.images import ImageTooLarge, InvalidImage, decode_image, encode_jpeg, photos_in
from app.vision.postprocess import count_by_class
from app.vision.tiling import TILING_MODES


def add_command(commands) -> None:
    count = commands.add_parser("count", help="count objects in photos or folders of photos")
    count.add_argument("paths", nargs="+", type=Path)
    count.add_argument("--output", "-o", type=Path, help="write here instead of standard output")
    count.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    count.add_argument("--annotate", type=Path, metavar="DIR", help="also write annotated pictures here")
    count.add_argument("--threshold", type=float, default=DetectOptions.threshold)
    count.add_argument("--tiling", choices=TILING_MODES, default="auto")
    count.add_argument("--auto-crop", action="store_true", help="count only the sample (the stained drop)")
    count.set_defaults(run=run)


def run(args, parser) -> int:
    if not 0 <= args.threshold <= 1:
        parser.error("--threshold must be between 0 and 1")
    try:
        settings = Settings.from_env()
        detector = build_detector(settings)
    except (ConfigError, ModelError, EngineUnavailable) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    photos = photos_in(args.paths)
    options = DetectOptions(threshold=args.threshold, tiling=args.tiling)
    # UTF-8 whatever the locale; names that are not UTF-8 are already escaped (display_name).
    out = args.output.open("w", newline="", encoding="utf-8", errors="backslashreplace") if args.output else sys.stdout
    try:
        write = _writer(out, args.format, detector.class_names)
        failures = 0
        for index, photo in enumerate(photos, start=1):
            _progress(index, len(photos), photo)
            row = count_photo(photo, detector, options, settings, args.annotate, args.auto_crop)
            failures += bool(row["error"])
            write(row)
    finally:
        if args.output:
            out.close()
    print(f"\rcounted {len(photos) - failures} photos, {failures} could not be read", file=sys.stderr)
    return 0


def count_photo(
    photo: Path,
    detector,
    options: DetectOptions,
    settings: Settings,
    annotate_dir: Path | None,
    auto_crop: bool = False,
) -> dict:
    row: dict = {
        "file": display_name(photo),
        "width": None,
        "height": None,
        "crop": None,
        "counts": {},
        "ms": None,
        "error": "",
    }
    started = time.perf_counter()
    try:
        image = decode_image(read_regular_file(photo), settings.max_image_pixels)
    except (OSError, InvalidImage, ImageTooLarge) as exc:
        row["error"] = str(exc)
        return row
    except Exception as exc:  # a decoder's own fault on one photo: its row says so, the run goes on
        row["error"] = f"the photo could not be decoded ({type(exc).__name__}: {exc})"
        return row
    if auto_crop:
        detections, crop = detect_in_sample(detector, image, options)
    else:
        detections, crop = detector.detect(image, options), None
    counts = count_by_class(detections, detector.class_names)
    row.update(height=image.shape[0], width=image.shape[1], counts=counts, crop=crop.as_list() if crop else None)
    row["ms"] = round((time.perf_counter() - started) * 1000, 1)
    if annotate_dir:
        annotate_dir.mkdir(parents=True, exist_ok=True)
        annotated = annotate(image, detections, counts, channels="BGR")
        if crop:
            outline(annotated, crop)
        picture = encode_jpeg(annotated, settings.jpeg_quality, channels="BGR")
        (annotate_dir / f"{photo.stem}.annotated.jpg").write_bytes(picture)
    return row


def display_name(path: Path) -> str:
    """The path as text that is valid UTF-8: bytes of a name that is not UTF-8 (a Latin-1
    `caf\\xe9.jpg` from an old camera card) are shown as \\xe9 escapes, not a crash."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class NotARegularFile(OSError):
    """A FIFO, a device or a socket: reading it could block forever or never end."""


def read_regular_file(path: Path) -> bytes:
    # O_NONBLOCK: opening a FIFO nobody writes to returns at once instead of waiting for a
    # writer; fstat on what was opened, not on the name, so nothing is swapped in between.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotARegularFile(f"{display_name(path)} is not a regular file (a FIFO, device or socket)")
        return stream.read()


def _writer(out, fmt: str, class_names: tuple[str, ...]):
    if fmt == "jsonl":
        return lambda row: print(json.dumps(row), file=out, flush=True)
    table = csv.writer(out)
    table.writerow(["file", "width", "height", "crop", *class_names, "ms", "error"])

    def write(row: dict) -> None:
        counts = [row["counts"].get(name, "") for name in class_names]
        crop = " ".join(map(str, row["crop"])) if row["crop"] else ""
        table.writerow([row["file"], row["width"], row["height"], crop, *counts, row["ms"], row["error"]])
        out.flush()

    return write


def _progress(index: int, total: int, photo: Path) -> None:
    if sys.stderr.isatty() or total > 1:
        width = 30
        done = width * index // max(total, 1)
        name = display_name(Path(photo.name))[:40]
        print(f"\r[{'#' * done}{'.' * (width - done)}] {index}/{total} {name:40}", end="", file=sys.stderr)
