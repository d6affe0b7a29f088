"""The detector every photo goes through (app/pipeline): one engine, its lock, tiling
and the deadline, and the shared post-processing that turns raw candidates into
counted detections."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.model.files import ModelDescription, load_model_description, model_file_sha256
from app.vision.detection import Detection, DetectOptions
from app.vision.postprocess import BestCandidates, select_detections
from app.vision.tile_skipping import TileCounts, tiles_to_run
from app.vision.tiling import (
    DEFAULT_CONTRAST_FLOOR,
    DEFAULT_OVERLAP,
    MERGE_IOS,
    drop_cut_boxes,
    should_tile,
    tile_grid,
    to_image,
)

from .batching import Batcher, BatchTimeout
from .engine_turns import EngineTurns
from .engines import Engine, create_engine

if TYPE_CHECKING:  # the settings are the layer above; build_detector only reads them
    from app.settings import Settings

log = logging.getLogger(__name__)


TILES_PER_CHECK = 8  # tiled photos look at their deadline between runs of this many tiles


class EngineBusy(RuntimeError):
    """The engine stayed busy with other requests until the photo's deadline."""


class DeadlineExceeded(RuntimeError):
    """The photo needs more time than its request is given (a huge tiled photo)."""


@dataclass(frozen=True)
class Detected:
    """A photo's detections, and the tiles run and skipped to find them."""

    detections: list[Detection]
    tiles: TileCounts


class Detector:
    """Whole once made: its engine, its batcher (when MAX_BATCH > 1) and how long the
    model took to load (build_detector measures it, the engine's warm-up included).
    tile_contrast_floor: tiles of less contrast are not run (tile_skipping.py); 0 runs
    every tile, outside auto-crop's sample too."""

    def __init__(
        self,
        engine: Engine,
        model: ModelDescription,
        tile_overlap: float = DEFAULT_OVERLAP,
        tile_contrast_floor: float = DEFAULT_CONTRAST_FLOOR,
        max_batch: int = 1,
        max_batch_delay_s: float = 0.0,
        load_seconds: float = 0.0,
    ):
        self.engine = engine
        self.model = model
        self.tile_overlap = tile_overlap
        self.tile_contrast_floor = tile_contrast_floor
        # Engines are not thread-safe (darknet, OpenCV's Net): one call at a time, taken
        # in arrival order, and given back between a tiled photo's runs of tiles.
        self._lock = EngineTurns()
        # Whole photos of several requests together (batching.py).
        self.batcher = Batcher(engine, self._lock, max_batch, max_batch_delay_s) if max_batch > 1 else None
        self.load_seconds = load_seconds

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.class_names

    @property
    def model_id(self) -> str:
        """The weights' sha256, first 12 hex digits: which model counted, in every row and metric."""
        return self.file_hashes[self.model.files.weights.name][:12]

    @functools.cached_property
    def file_hashes(self) -> dict[str, str]:
        """sha256 of each model file: which model answered, for a lab's records."""
        files = self.model.files
        paths = [files.cfg, files.weights, files.names] + ([files.data] if files.data else [])
        return {path.name: model_file_sha256(path) for path in paths}

    def detect(
        self, image: np.ndarray, options: DetectOptions | None = None, deadline: float | None = None
    ) -> list[Detection]:
        return self.detect_photo(image, options, deadline).detections

    def detect_photo(
        self,
        image: np.ndarray,
        options: DetectOptions | None = None,
        deadline: float | None = None,
        sample: np.ndarray | None = None,
    ) -> Detected:
        """deadline: a time.monotonic() value, the photo's one limit: a busy engine is
        waited for until then (EngineBusy), and past it a tiled photo stops with
        DeadlineExceeded rather than hold the engine while every other photo waits.
        None (the count command, one photo at a time) waits as long as it takes.
        sample: auto-crop's outline of the sample in the image's pixels; tiles that do
        not reach it are not run."""
        options = options or DetectOptions()
        height, width = image.shape[:2]
        network = (self.model.network.width, self.model.network.height)
        tiles = (
            tile_grid((width, height), network, self.tile_overlap)
            if should_tile(options.tiling, (width, height), network)
            else []
        )
        runs = tiles_to_run(image, tiles, self.tile_contrast_floor, sample)
        run = [tile for tile, runs_it in zip(tiles, runs, strict=True) if runs_it]
        wait_s = None if deadline is None else max(0.0, deadline - time.monotonic())  # for the batcher
        # Passes' candidates kept as they come, bounded: threshold=0 keeps every box.
        pool = BestCandidates(options)
        if self.batcher is not None and not tiles:
            try:
                pool.add(self.batcher.predict(image, options.threshold, timeout=wait_s), 0)
            except BatchTimeout as exc:
                raise EngineBusy(str(exc)) from None
        else:
            self._forward(image, run, options.threshold, deadline, pool)
        ios = MERGE_IOS if tiles else None
        detections = select_detections(pool.merged(), options, self.class_names, (width, height), ios_threshold=ios)
        return Detected(detections, TileCounts(len(run), len(tiles) - len(run)))

    def _forward(self, image, tiles, threshold: float, deadline: float | None, pool) -> None:
        """The whole-photo pass (pass 0) and the tiles' passes (1, 2, ...) into the pool,
        taking the engine for each run of tiles: photos that arrive meanwhile take their
        turn in between."""
        size = (image.shape[1], image.shape[0])
        # The whole-image pass finds the objects larger than a tile (as SAHI keeps it).
        with self._engine(deadline, turns_had=0):
            whole = self.engine.predict(image, min_score=threshold)
        pool.add(whole, 0)
        for start in range(0, len(tiles), TILES_PER_CHECK):
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceeded(
                    f"the photo needs {len(tiles)} tiles, more than its request's time allows "
                    f"({start} done); send it with tiling=off, or a smaller photo"
                )
            chunk = tiles[start : start + TILES_PER_CHECK]
            crops = [image[t.y : t.y + t.height, t.x : t.x + t.width] for t in chunk]
            with self._engine(deadline, turns_had=1 + start // TILES_PER_CHECK):
                found = self.engine.predict_many(crops, min_score=threshold)
            for index, (tile, candidates) in enumerate(zip(chunk, found, strict=True), start=start + 1):
                pool.add(to_image(drop_cut_boxes(candidates, tile, size), tile), index)

    @contextlib.contextmanager
    def _engine(self, deadline: float | None, turns_had: int):
        """The engine, waited for until the photo's deadline (None: as long as it takes)."""
        wait_s = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._lock.acquire(timeout=wait_s, turns_had=turns_had):
            raise EngineBusy("the model was busy until the request's deadline; try again")
        try:
            yield
        finally:
            self._lock.release()


def build_detector(settings: Settings) -> Detector:
    started = time.perf_counter()
    model = load_model_description(settings.model_dir, settings.pins)
    engine = create_engine(
        settings.backend,
        model,
        threads=settings.engine_threads,
        device=settings.device,
        precision=settings.precision,
        min_agreement=settings.int8_min_agreement,
    )
    # The first forward pass allocates the engine's buffers: paid before serving.
    network = model.network
    engine.predict(np.zeros((network.height, network.width, 3), dtype=np.uint8), min_score=DetectOptions().threshold)
    detector = Detector(
        engine,
        model,
        tile_overlap=settings.tile_overlap,
        tile_contrast_floor=settings.tile_contrast_floor,
        max_batch=settings.max_batch,
        max_batch_delay_s=settings.max_batch_delay_ms / 1000,
        load_seconds=time.perf_counter() - started,
    )
    log.info(
        "model loaded: %s (%d classes, %dx%d%s) on %s/%s %s with %d threads in %.2f s; %s",
        model.files.weights,
        len(model.class_names),
        model.network.width,
        model.network.height,
        ", letterbox" if model.network.letter_box else "",
        engine.name,
        engine.device,
        engine.precision,
        settings.engine_threads,
        detector.load_seconds,
        engine.selection,
    )
    return detector
