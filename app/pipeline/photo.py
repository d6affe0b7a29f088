"""The photo pipeline: decode -> detect -> count -> annotate -> encode, timed by stage."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from app.inference.detector import Detected, Detector
from app.vision.annotate import annotate
from app.vision.autocrop import Crop, locate_sample, outline
from app.vision.detection import Detection, DetectOptions
from app.vision.images import encode_jpeg, open_photo
from app.vision.postprocess import count_by_class
from app.vision.tile_skipping import TileCounts

# Holds a photo's decoded pixels for as long as they exist (the HTTP layer's memory budget).
PixelHold = Callable[[int, float | None], AbstractContextManager]
COUNTING_STAGES = ("decode", "inference")  # what `ms` of a result measures


@dataclass(frozen=True)
class PhotoLimits:
    """What one photo may cost: the pixels it may decode to, the time it has, the memory
    it holds while decoded, and the quality its picture is encoded at."""

    max_pixels: int
    jpeg_quality: int = 90
    # time.monotonic() by which the answer is due (REQUEST_DEADLINE_S from the photo's
    # arrival): every wait (memory, engine) ends there; None waits as long as it takes.
    deadline: float | None = None
    hold_pixels: PixelHold | None = None  # the HTTP layer's memory budget


@dataclass(frozen=True)
class PhotoResult:
    """What one photo gave: every output (JSON, CSV, COCO...) is rendered from this."""

    filename: str | None
    width: int
    height: int
    detections: tuple[Detection, ...]
    counts: dict[str, int]  # every class in .names order, zeros included
    auto_crop: bool = False
    crop: Crop | None = None  # the sample counted, when auto_crop found one
    stage_seconds: dict[str, float] = field(default_factory=dict)
    picture: bytes | None = None  # the annotated JPEG, made only when asked
    # When the photo was taken: its EXIF date (the camera's local time); the count
    # command falls back to the file's modification time, the API to the `date` its
    # client sends (the page sends the file's modification time).
    taken: datetime | None = None
    threshold: float | None = None  # the score a box needed to be counted
    tiles: TileCounts = field(default_factory=TileCounts)  # tiles run and skipped (0, 0: not tiled)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def counting_ms(self) -> float:
        return round(sum(self.stage_seconds.get(stage, 0.0) for stage in COUNTING_STAGES) * 1000, 1)


@dataclass(frozen=True)
class PhotoFailure:
    """A photo that could not be counted, where a batch goes on without it."""

    filename: str
    error: str


def process_photo(
    data: bytes,
    detector: Detector,
    options: DetectOptions,
    limits: PhotoLimits,
    *,
    filename: str | None = None,
    auto_crop: bool = False,
    annotated: bool = False,
) -> PhotoResult:
    """Raises the photo's errors (InvalidImage, ImageTooLarge), the detector's
    (EngineBusy, DeadlineExceeded) and the pixel hold's."""
    stages = _StageClock()
    deadline = limits.deadline
    photo = open_photo(data, limits.max_pixels)  # the header only: the size is checked before decoding
    hold = limits.hold_pixels(photo.pixels, deadline) if limits.hold_pixels else contextlib.nullcontext()
    # The decoded photo and everything made from it exist only while its pixels are held.
    with hold:
        image = photo.decode()
        taken = photo.taken  # after decode: a PNG's EXIF comes with its pixels
        stages.done("decode")
        found, crop = _detect(detector, image, options, auto_crop, deadline)
        detections = found.detections
        stages.done("inference")
        counts = count_by_class(detections, detector.class_names)
        picture = None
        if annotated:
            picture = annotated_jpeg(image, detections, counts, crop, limits.jpeg_quality, stages)
        height, width = image.shape[:2]
        del image
    return PhotoResult(
        filename=filename,
        width=width,
        height=height,
        detections=tuple(detections),
        counts=counts,
        auto_crop=auto_crop,
        crop=crop,
        stage_seconds=stages.seconds,
        picture=picture,
        taken=taken,
        threshold=options.threshold,
        tiles=found.tiles,
    )


def annotated_jpeg(
    image: np.ndarray,
    detections: list[Detection],
    counts: dict[str, int],
    crop: Crop | None,
    jpeg_quality: int,
    stages: _StageClock | None = None,
) -> bytes:
    """The photo with its boxes, legend and crop outline, as the JPEG every output shows."""
    stages = stages or _StageClock()
    drawn = annotate(image, detections, counts, channels="BGR")  # what the JPEG encoder takes
    if crop:
        outline(drawn, crop)
    stages.done("annotate")
    picture = encode_jpeg(drawn, jpeg_quality, channels="BGR")
    stages.done("encode")
    return picture


def _detect(
    detector: Detector, image: np.ndarray, options: DetectOptions, auto_crop: bool, deadline
) -> tuple[Detected, Crop | None]:
    """(detections in the whole photo's pixels and the tiles run, the crop counted or None)."""
    sample = locate_sample(image) if auto_crop else None
    if sample is None:
        return detector.detect_photo(image, options, deadline), None
    crop = sample.crop
    region = image[crop.y : crop.y + crop.height, crop.x : crop.x + crop.width]
    found = detector.detect_photo(region, options, deadline, sample=sample.outline - (crop.x, crop.y))
    moved = [_moved(detection, crop.x, crop.y) for detection in found.detections]
    return Detected(moved, found.tiles), crop


def _moved(detection: Detection, dx: int, dy: int) -> Detection:
    x, y, w, h = detection.box
    return replace(detection, box=(x + dx, y + dy, w, h))


class _StageClock:
    """Durations of consecutive stages, for the log, the metrics and `ms`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now
