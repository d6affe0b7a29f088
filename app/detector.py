"""The detector the HTTP layer talks to: one engine, its lock, and the shared
post-processing that turns raw candidates into counted detections."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from .detection import Detection, DetectOptions
from .engines import Engine, create_engine
from .model_files import ModelDescription, load_model_description
from .postprocess import select_detections
from .settings import Settings

log = logging.getLogger(__name__)


class EngineBusy(RuntimeError):
    """The engine stayed busy with other requests for longer than we wait."""


class Detector:
    def __init__(self, engine: Engine, model: ModelDescription, wait_s: float = 60.0):
        self.engine = engine
        self.model = model
        self._wait_s = wait_s
        # Engines are not thread-safe (darknet, OpenCV's Net): one call at a time.
        self._lock = threading.Lock()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.class_names

    def detect(self, image: np.ndarray, options: DetectOptions | None = None) -> list[Detection]:
        options = options or DetectOptions()
        if not self._lock.acquire(timeout=self._wait_s):
            raise EngineBusy(f"the model was busy for {self._wait_s:g} s; try again")
        try:
            candidates = self.engine.predict(image, min_score=options.threshold)
        finally:
            self._lock.release()
        height, width = image.shape[:2]
        return select_detections(candidates, options, self.class_names, (width, height))

    def warm_up(self) -> None:
        """The first forward pass allocates buffers; pay for it before serving."""
        network = self.model.network
        self.detect(np.zeros((network.height, network.width, 3), dtype=np.uint8))


def build_detector(settings: Settings) -> Detector:
    started = time.perf_counter()
    model = load_model_description(settings.model_dir)
    engine = create_engine(settings.backend, model, threads=settings.engine_threads, device=settings.device)
    detector = Detector(engine, model, wait_s=settings.inference_wait_s)
    detector.warm_up()
    log.info(
        "model loaded: %s (%d classes, %dx%d%s) on %s/%s with %d threads in %.2f s",
        model.files.weights,
        len(model.class_names),
        model.network.width,
        model.network.height,
        ", letterbox" if model.network.letter_box else "",
        engine.name,
        engine.device,
        settings.engine_threads,
        time.perf_counter() - started,
    )
    return detector
