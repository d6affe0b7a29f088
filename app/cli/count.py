"""Counting a folder of photos without a server: the same pipeline, in process.

  python -m app count PATH... [--output FILE] [--format csv|jsonl|coco] [--detections]
      [--annotate DIR] [--threshold 0.25] [--tiling auto|on|off] [--auto-crop]

One row per photo: file, width, height, a count per class, milliseconds; a photo
that cannot be read gets its error in the row and the run goes on. --format coco
writes one COCO detection dataset of every photo at the end. The model is the
service's (MODEL_DIR, BACKEND, ... from the environment).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from app.inference.detector import build_detector
from app.pipeline import PhotoFailure, PhotoResult, process_photo, render
from app.settings import STARTUP_ERRORS, Settings
from app.vision.detection import DetectOptions
from app.vision.images import ImageTooLarge, InvalidImage, photos_in
from app.vision.tiling import TILING_MODES


def add_command(commands) -> None:
    count = commands.add_parser("count", help="count objects in photos or folders of photos")
    count.add_argument("paths", nargs="+", type=Path)
    count.add_argument("--output", "-o", type=Path, help="write here instead of standard output")
    count.add_argument("--format", choices=tuple(render.DOCUMENTS), default="csv")
    count.add_argument("--detections", action="store_true", help="jsonl: each photo's boxes, as the API's `detections`")
    count.add_argument("--annotate", type=Path, metavar="DIR", help="also write annotated pictures here")
    count.add_argument("--threshold", type=float, default=DetectOptions.threshold)
    count.add_argument("--tiling", choices=TILING_MODES, default="auto")
    count.add_argument("--auto-crop", action="store_true", help="count only the sample (the stained drop)")
    count.set_defaults(run=run)


def run(args, parser) -> int:
    if not 0 <= args.threshold <= 1:
        parser.error("--threshold must be between 0 and 1")
    if args.detections and args.format != "jsonl":
        parser.error("--detections goes with --format jsonl (coco always has the boxes)")
    try:
        settings = Settings.for_one_process()
        detector = build_detector(settings)
    except STARTUP_ERRORS as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    photos = photos_in(args.paths)
    options = DetectOptions(threshold=args.threshold, tiling=args.tiling)
    # UTF-8 whatever the locale; names that are not UTF-8 are already escaped (display_name).
    out = args.output.open("w", newline="", encoding="utf-8", errors="backslashreplace") if args.output else sys.stdout
    try:
        document = render.DOCUMENTS[args.format](detector.class_names, args.detections)
        _write(out, document.head())
        failures = 0
        for index, photo in enumerate(photos, start=1):
            _progress(index, len(photos), photo)
            outcome = count_photo(photo, detector, options, settings, args.auto_crop, args.annotate is not None)
            if isinstance(outcome, PhotoFailure):
                failures += 1
            elif args.annotate:
                args.annotate.mkdir(parents=True, exist_ok=True)
                (args.annotate / f"{photo.stem}.annotated.jpg").write_bytes(outcome.picture)
            _write(out, document.photo(outcome))
        _write(out, document.tail())
    finally:
        if args.output:
            out.close()
    print(f"\rcounted {len(photos) - failures} photos, {failures} could not be read", file=sys.stderr)
    return 0


def count_photo(
    photo: Path, detector, options: DetectOptions, settings: Settings, auto_crop: bool, annotated: bool
) -> PhotoResult | PhotoFailure:
    name = display_name(photo)
    try:
        return process_photo(
            read_regular_file(photo),
            detector,
            options,
            max_pixels=settings.max_image_pixels,
            filename=name,
            auto_crop=auto_crop,
            annotated=annotated,
            jpeg_quality=settings.jpeg_quality,
        )
    except (OSError, InvalidImage, ImageTooLarge) as exc:  # a decoder's fault is an InvalidImage too
        return PhotoFailure(name, str(exc))


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


def _write(out, text: str) -> None:
    if text:
        out.write(text)
        out.flush()  # a row per photo as it is counted: a long run can be followed, or cut short


def _progress(index: int, total: int, photo: Path) -> None:
    if sys.stderr.isatty() or total > 1:
        width = 30
        done = width * index // max(total, 1)
        name = display_name(Path(photo.name))[:40]
        print(f"\r[{'#' * done}{'.' * (width - done)}] {index}/{total} {name:40}", end="", file=sys.stderr)
