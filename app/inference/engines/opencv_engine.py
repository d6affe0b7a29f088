"""OpenCV DNN: reads the darknet .cfg/.weights itself, runs on the CPU."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from app.model.darknet_cfg import DETECTION_LAYER_TYPES, Section, render_cfg
from app.model.files import ModelDescription, ModelError
from app.vision.detection import Candidates
from app.vision.preprocess import fit_to_network

from .base import Engine, EngineUnavailable
from .yolo_rows import candidates


def load_opencv_engine(
    model: ModelDescription, threads: int, device: str, precision: str, min_agreement: float
) -> OpenCVEngine:
    """The registry's loader: fp32 only, create_engine refuses any other precision."""
    return OpenCVEngine(model, threads=threads, device=device)


class OpenCVEngine(Engine):
    name = "opencv"
    device = "cpu"

    def __init__(self, model: ModelDescription, threads: int, device: str = "auto"):
        if device == "cuda":
            raise EngineUnavailable("the opencv engine runs on the CPU only (DEVICE=cuda asked)")
        if int(cv2.__version__.split(".")[0]) >= 5:
            raise EngineUnavailable(f"OpenCV {cv2.__version__} has no darknet importer; install opencv 4.x")
        self._network = model.network
        cfg = render_cfg(_without_score_floor(model.cfg_sections)).encode()
        weights = model.files.weights.read_bytes()
        if model.pinned is not None and hashlib.sha256(weights).hexdigest() != model.pinned.weights:
            raise ModelError(f"{model.files.weights} changed after it was checked against MODEL_SHA256")
        try:
            self._net = cv2.dnn.readNetFromDarknet(np.frombuffer(cfg, np.uint8), np.frombuffer(weights, np.uint8))
        except cv2.error as exc:
            reason = str(exc).strip().splitlines()[-1]
            raise ModelError(
                f"OpenCV cannot load {model.files.weights.name} with {model.files.cfg.name}: {reason}"
            ) from None
        self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self._net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self._outputs = self._net.getUnconnectedOutLayersNames()
        cv2.setNumThreads(threads)  # per process: each worker gets its share of the cores

    def predict(self, image: np.ndarray, min_score: float) -> Candidates:
        blob, placement = fit_to_network(image, self._network)
        self._net.setInput(blob)
        return candidates(np.concatenate(self._net.forward(self._outputs)), placement, min_score)


def _without_score_floor(sections: tuple[Section, ...]) -> list[Section]:
    """OpenCV zeroes class scores under a [yolo] layer's `thresh` (default 0.2), which
    would make a request threshold below 0.2 silently act as 0.2; the threshold is
    applied later, per request, so the floor is removed here."""
    rewritten = []
    for section in sections:
        options = dict(section.options)
        if section.type in DETECTION_LAYER_TYPES:
            options["thresh"] = "0"
        rewritten.append(Section(section.type, options, section.line))
    return rewritten
