"""Counting a folder of photos without a server: the same pipeline, in process.

  python -m app count PATH... [--output FILE] [--format csv|long|jsonl|coco] [--detections]
      [--annotate DIR] [--plot PNG] [--threshold 0.25] [--tiling auto|on|off] [--auto-crop]

One row per photo: file, date, width, height, crop, a count per class, total, threshold,
model, ms, tiles_run, tiles_skipped, error (--format long: a row per photo and class). A photo that cannot be read
gets its error in its row and the run goes on; the summary names it. --format coco
writes one COCO detection dataset of every photo at the end. The model is the
service's (MODEL_DIR, BACKEND, ... from the environment).

The date is the photo's EXIF date (app/vision/images.py), else the file's modification
time (local time, ISO 8601). Annotated pictures mirror the folders under the path given; they,
an --annotate folder inside the folder counted, and the -o and --plot files are never counted.

Exit status (EXIT_HELP): 0 every photo counted, 1 some photos failed, 2 bad arguments
(argparse's own; also an output that cannot be written), 3 nothing to count, 4 cannot start.
Every error is one line on standard error, said before the model loads; a picture that
cannot be written mid-run makes its photo a failure (exit 1), and the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import os
import stat
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from app.inference.detector import build_detector
from app.pipeline import PhotoFailure, PhotoLimits, PhotoResult, process_photo, render
from app.settings import STARTUP_ERRORS, Settings
from app.vision.detection import DetectOptions
from app.vision.images import ANNOTATED_SUFFIX, PHOTO_SUFFIXES, ImageTooLarge, InvalidImage, photos_in
from app.vision.tiling import TILING_MODES

EXIT_COUNTED = 0
EXIT_SOME_FAILED = 1
EXIT_BAD_ARGUMENTS = 2  # argparse's own code for its errors
EXIT_NOTHING_TO_COUNT = 3
EXIT_CANNOT_START = 4
EXIT_HELP = f"""exit status:
  {EXIT_COUNTED}  every photo was counted
  {EXIT_SOME_FAILED}  some photos could not be counted: their rows carry the error, the summary names them;
     or the output could not be written on (a full disk): the rows so far are there
  {EXIT_BAD_ARGUMENTS}  bad arguments: a bad --threshold, --detections without --format jsonl, an --output,
     --plot or --annotate folder that cannot be created
  {EXIT_NOTHING_TO_COUNT}  nothing to count: a path that does not exist, or no photo found (an empty folder,
     a folder of non-photos)
  {EXIT_CANNOT_START}  cannot start: the model or a setting cannot be used (MODEL_DIR, BACKEND, ...)

date: the photo's EXIF DateTimeOriginal (else DateTimeDigitized, else DateTime), else the
file's modification time; local time, ISO 8601. --format long: a row per photo and class,
zeros included, for a pivot table.
--annotate DIR mirrors the folders under the path given (several paths: under the folder
they share): day1/x.jpg -> DIR/day1/x.annotated.jpg. *.annotated.jpg files, a DIR inside
the folder counted, and the --output and --plot files are never counted.
--plot: counts per class against the date taken, or per photo when the dates do not
order the photos (one missing, or all the same).
"""
MAX_FAILURES_NAMED = 10


class CountStopped(Exception):
    """Why the count cannot go on, in one line, with its exit status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def add_command(commands) -> None:
    count = commands.add_parser(
        "count",
        help="count objects in photos or folders of photos",
        description="Count objects in photos or folders of photos: a row per photo.",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    count.add_argument("paths", nargs="+", type=Path)
    count.add_argument("--output", "-o", type=Path, help="write here instead of standard output")
    count.add_argument("--format", choices=tuple(render.DOCUMENTS), default="csv")
    count.add_argument("--detections", action="store_true", help="jsonl: each photo's boxes, as the API's `detections`")
    count.add_argument("--annotate", type=Path, metavar="DIR", help="also write annotated pictures here")
    count.add_argument("--plot", type=Path, metavar="PNG", help="also draw the counts per class by date, as a PNG")
    count.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="default: the model's (DEFAULT_THRESHOLD, else evaluate --save-threshold's, else 0.25)",
    )
    count.add_argument("--tiling", choices=TILING_MODES, default="auto")
    count.add_argument("--auto-crop", action="store_true", help="count only the sample (the stained drop)")
    count.set_defaults(run=run)


def run(args, parser) -> int:
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        parser.error("--threshold must be between 0 and 1")
    if args.detections and args.format != "jsonl":
        parser.error("--detections goes with --format jsonl (coco always has the boxes)")
    try:
        return _count(args)
    except CountStopped as stopped:
        print(stopped, file=sys.stderr)
        return stopped.status


def _count(args) -> int:
    outputs = [path for path in (args.output, args.plot) if path]
    photos, hidden = _photos(args.paths, skip=[*outputs, *([args.annotate] if args.annotate else [])], outputs=outputs)
    pictures = annotated_paths(photos, args.paths) if args.annotate else [None] * len(photos)
    # Every output is checked before the model loads, and opened only after: a start that
    # fails leaves an earlier run's counts.csv as it was.
    for path, what in ((args.output, "the output"), (args.plot, "the --plot file")):
        if path:
            _check_writable(path, what)
    if args.annotate:
        _make_folder(args.annotate)
    settings, detector = _start()
    with contextlib.ExitStack() as stack:
        # UTF-8 whatever the locale; names that are not UTF-8 are already escaped (display_name).
        out = _created(args.output, "the output", "w", newline="", errors="backslashreplace") if args.output else None
        if out:
            stack.callback(_close, out)
        out = out or sys.stdout
        threshold = args.threshold if args.threshold is not None else _model_threshold(settings, detector)
        options = DetectOptions(threshold=threshold, tiling=args.tiling)
        document = render.DOCUMENTS[args.format](detector.class_names, args.detections, model=detector.model_id)
        progress = Progress(len(photos))
        counted: list[PhotoResult] = []
        failures: list[PhotoFailure] = []
        _write(out, document.head())
        for index, (photo, picture) in enumerate(zip(photos, pictures, strict=True), start=1):
            progress.counting(index, photo)
            outcome = count_photo(photo, detector, options, settings, args.auto_crop, picture is not None)
            if isinstance(outcome, PhotoResult) and picture is not None:
                outcome = _saved(args.annotate, picture, outcome)
            if isinstance(outcome, PhotoFailure):
                failures.append(outcome)
            else:
                counted.append(replace(outcome, picture=None, detections=()))  # for the plot: counts and date
            progress.counted(index, photo, outcome)
            _write(out, document.photo(outcome))
        _write(out, document.tail())
        progress.finish()
        if args.plot:
            _plot(counted, detector.class_names, args.plot)
    print(summary(len(counted), failures, hidden), file=sys.stderr)
    return EXIT_SOME_FAILED if failures else EXIT_COUNTED


def _photos(paths: list[Path], skip: list[Path], outputs: list[Path]) -> tuple[list[Path], int]:
    """The photos to count, and how many hidden ones (._x.jpg, .thumbnails/) were left out."""
    missing = [display_name(path) for path in paths if not path.exists()]
    if missing:
        raise CountStopped(EXIT_NOTHING_TO_COUNT, f"count: no such file or folder: {', '.join(missing)}")
    both = [display_name(path) for path in paths if any(_same(path, output) for output in outputs)]
    if both:
        raise CountStopped(EXIT_BAD_ARGUMENTS, f"count: {', '.join(both)} is to be counted and written to; choose one")
    # A folder is counted once, however often it is named or inside another one named.
    roots = list({os.path.realpath(path): path for path in paths}.values())
    # An output folder is left out of a folder counted only when it lies inside it: --annotate
    # given as the counted folder itself (or above it) still counts the photos there.
    hidden: list[Path] = []
    found = {path: photos_in([path], skip=[s for s in skip if _inside(s, path)], hidden=hidden) for path in roots}

    empty = ", ".join(display_name(path) for path, photos in found.items() if not photos)
    if not any(found.values()):
        kinds = ", ".join(sorted(PHOTO_SUFFIXES))
        raise CountStopped(EXIT_NOTHING_TO_COUNT, f"count: nothing to count: no photo ({kinds}) in {empty}")
    if empty:  # one empty folder of several is worth a word, not a stop
        print(f"count: no photo in {empty}", file=sys.stderr)
    unique = {os.path.realpath(photo): photo for photos in found.values() for photo in photos}
    return list(unique.values()), len({os.path.realpath(photo) for photo in hidden})


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _inside(path: Path, folder: Path) -> bool:
    """path lies in folder, and is not folder itself."""
    return Path(os.path.realpath(folder)) in Path(os.path.realpath(path)).parents


def annotated_paths(photos: list[Path], given: list[Path]) -> list[Path]:
    """Each photo's annotated picture, relative to the --annotate folder: the folders under
    the path given (under the folder several paths share), mirrored; x.jpg -> x.annotated.jpg.
    Two photos never get one name: the second keeps its suffix (x.png.annotated.jpg), then a number."""
    roots = [os.path.abspath(path if path.is_dir() else path.parent) for path in given]
    base = Path(os.path.commonpath(roots))
    taken: set[str] = set()
    pictures = []
    for photo in photos:
        relative = Path(os.path.abspath(photo)).relative_to(base)
        names = itertools.chain((relative.stem, relative.name), (f"{relative.name}.{n}" for n in itertools.count(2)))
        for name in names:
            picture = relative.with_name(name + ANNOTATED_SUFFIX)
            key = str(picture).casefold()  # one file on a case-insensitive disk (a camera card, macOS)
            if key not in taken:
                taken.add(key)
                pictures.append(picture)
                break
    return pictures


def _check_writable(path: Path, what: str) -> None:
    if path.is_dir():
        problem = errno.EISDIR
    elif not path.parent.is_dir():
        problem = errno.ENOENT
    elif not os.access(path if path.exists() else path.parent, os.W_OK):  # an existing file is rewritten in place
        problem = errno.EACCES
    else:
        return
    raise CountStopped(
        EXIT_BAD_ARGUMENTS, f"count: cannot write {what} {display_name(path)}: {os.strerror(problem)}; nothing counted"
    )


def _created(path: Path, what: str, mode: str, **options):
    try:
        return path.open(mode, encoding="utf-8", **options) if "b" not in mode else path.open(mode)
    except OSError as exc:
        raise CountStopped(
            EXIT_BAD_ARGUMENTS, f"count: cannot write {what} {display_name(path)}: {_reason(exc)}; nothing counted"
        ) from None


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "a file of that name is in the way" if isinstance(exc, FileExistsError) else _reason(exc)
        raise CountStopped(
            EXIT_BAD_ARGUMENTS, f"count: cannot create the --annotate folder {display_name(folder)}: {reason}"
        ) from None


def _start():
    try:
        settings = Settings.for_one_process()
        detector = build_detector(settings)
        _model_threshold(settings, detector)  # a saved threshold that cannot be read stops the start
        return settings, detector
    except STARTUP_ERRORS as exc:
        raise CountStopped(EXIT_CANNOT_START, f"cannot start: {exc}") from None


class SymbolicLink(OSError):
    """A link where the count command writes: it would overwrite whatever it points to."""


def _model_threshold(settings, detector) -> float:
    from app.model.threshold import default_threshold

    weights = detector.model.files.weights
    return default_threshold(weights, detector.file_hashes[weights.name], settings.default_threshold).value


def _saved(folder: Path, picture: Path, result: PhotoResult) -> PhotoResult | PhotoFailure:
    """The result once its annotated picture is written; a picture that cannot be (a full
    disk) makes the photo a failure, with a row that says so, and the run goes on.

    A symbolic link planted in the --annotate folder (at a picture's name, or a folder
    on its way) is never followed: the picture is written to a new file and renamed
    over the name, which replaces a link itself, never its target."""
    path = folder / picture
    try:
        below = folder
        for part in picture.parent.parts:
            below = below / part
            if below.is_symlink():
                raise SymbolicLink(f"{display_name(below)} is a symbolic link, not followed")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            raise SymbolicLink(f"{display_name(path)} is a symbolic link, not followed")
        write_new_file(path, result.picture)
    except OSError as exc:
        return PhotoFailure(
            result.filename,
            f"counted, but the annotated picture {display_name(path)} could not be written: {_reason(exc)}",
        )
    return result


def _plot(results: list[PhotoResult], class_names: tuple[str, ...], path: Path) -> None:
    from .count_plot import write_plot  # matplotlib only when a plot is asked for

    partial = path.with_name(f".{path.name}.part")  # renamed when whole: never a 0-byte PNG
    with _created(partial, "the --plot file", "wb") as stream:
        write_plot(results, class_names, stream)
    os.replace(partial, path)


def write_new_file(path: Path, content: bytes) -> None:
    """content at path through a new file of this process (O_EXCL: no link or file is
    opened in its place) renamed over the name."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with open(descriptor, "wb") as stream:
            stream.write(content)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def summary(counted: int, failures: list[PhotoFailure], hidden: int = 0) -> str:
    text = f"counted {counted} photos, {len(failures)} could not be read"
    if hidden:
        text += f", {hidden} hidden skipped (._ files and hidden folders)"
    if not failures:
        return text
    named = [f"  {failure.filename}: {failure.error}" for failure in failures[:MAX_FAILURES_NAMED]]
    if len(failures) > MAX_FAILURES_NAMED:
        named.append(f"  and {len(failures) - MAX_FAILURES_NAMED} more (their rows carry the error)")
    return "\n".join([text + ":", *named])


def count_photo(
    photo: Path, detector, options: DetectOptions, settings: Settings, auto_crop: bool, annotated: bool
) -> PhotoResult | PhotoFailure:
    name = display_name(photo)
    try:
        limits = PhotoLimits(max_pixels=settings.max_image_pixels, jpeg_quality=settings.jpeg_quality)
        result = process_photo(
            read_regular_file(photo), detector, options, limits, filename=name, auto_crop=auto_crop, annotated=annotated
        )
    except (OSError, InvalidImage, ImageTooLarge) as exc:  # a decoder's fault is an InvalidImage too
        return PhotoFailure(name, str(exc))
    return result if result.taken else replace(result, taken=file_time(photo))


def file_time(path: Path) -> datetime | None:
    """The file's modification time, local, to the second: the date of a photo without EXIF."""
    try:
        return datetime.fromtimestamp(int(path.stat().st_mtime))
    except (OSError, OverflowError, ValueError):
        return None


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
    if not text:
        return
    try:
        out.write(text)
        out.flush()  # a row per photo as it is counted: a long run can be followed, or cut short
    except OSError as exc:  # a full disk, a closed pipe: the rows so far are written, the run cannot go on
        raise CountStopped(EXIT_SOME_FAILED, f"count: cannot write the output: {_reason(exc)}; stopped") from None


def _close(stream) -> None:
    # _write flushes every row and says when one fails: what close() would flush again
    # after a failure (a full disk) is already reported.
    with contextlib.suppress(OSError):
        stream.close()


class Progress:
    """On a terminal, one bar redrawn in place; elsewhere (a log file, a pipe) a plain line
    per photo, with no carriage return to run them all into one line."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty()

    def counting(self, index: int, photo: Path) -> None:
        if self.bar:
            width = 30
            done = width * index // max(self.total, 1)
            name = display_name(Path(photo.name))[:40]
            print(f"\r[{'#' * done}{'.' * (width - done)}] {index}/{self.total} {name:40}", end="", file=self.stream)

    def counted(self, index: int, photo: Path, outcome: PhotoResult | PhotoFailure) -> None:
        if self.bar:
            return
        if isinstance(outcome, PhotoFailure):
            print(f"failed {index}/{self.total} {outcome.filename}: {outcome.error}", file=self.stream, flush=True)
        else:
            print(f"counted {index}/{self.total} {display_name(photo)}", file=self.stream, flush=True)

    def finish(self) -> None:
        if self.bar:
            print(file=self.stream)  # the summary on a line of its own, under the finished bar
