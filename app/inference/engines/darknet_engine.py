"""darknet itself through the ctypes binding in darknet/: the production engine on a
GPU (a CUDA build in the Docker image), and a reference on the CPU (Debian's build)."""

from __future__ import annotations

import logging
import os

import numpy as np

from app.model.files import ModelDescription
from app.vision.detection import Candidates
from app.vision.preprocess import relative_to_pixels

from .base import DeviceUnavailable, Engine, EngineUnavailable

log = logging.getLogger(__name__)


def load_darknet_engine(
    model: ModelDescription, threads: int, device: str, precision: str, min_agreement: float
) -> DarknetEngine:
    """The registry's loader: fp32 only, create_engine refuses any other precision."""
    return DarknetEngine(model, threads=threads, device=device)


class DarknetEngine(Engine):
    name = "darknet"

    def __init__(self, model: ModelDescription, threads: int, device: str = "auto"):
        # An OpenMP build reads this once, when the library loads: each worker its share.
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        from darknet import LibraryError, Network, load_library

        try:
            library = load_library()
            use_gpu = library.has_gpu and device != "cpu"
            if device == "cuda" and not use_gpu:
                raise EngineUnavailable(f"{library.path} is a CPU-only build (DEVICE=cuda asked)")
            if use_gpu and (missing := library.gpu_missing()):
                if device == "cuda":
                    raise DeviceUnavailable(f"{library.path} is a CUDA build but {missing}")
                log.warning("darknet runs on the CPU: %s is a CUDA build but %s", library.path, missing)
                use_gpu = False
            self._network = Network(
                library,
                model.files.cfg,
                model.files.weights,
                classes=len(model.class_names),
                letter_box=model.network.letter_box,
                use_gpu=use_gpu,
            )
        except LibraryError as exc:
            raise EngineUnavailable(str(exc)) from None
        self.device = "cuda" if use_gpu else "cpu"
        self.library = library
        self.build = library.build or f"{library.path} ({library.flavour})"

    def predict(self, image: np.ndarray, min_score: float) -> Candidates:
        raw = self._network.predict(image, min_score)
        height, width = image.shape[:2]
        return Candidates(boxes=relative_to_pixels(raw.boxes, width, height), scores=raw.scores)
