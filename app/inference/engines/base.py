"""The interface every inference engine fills."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from app.vision.detection import Candidates


class EngineUnavailable(RuntimeError):
    """The engine's library, device or model support is missing on this machine."""


class DeviceUnavailable(EngineUnavailable):
    """The engine's build is for a GPU this machine does not have (no driver, no device):
    worth a warning where BACKEND=auto then serves with another engine."""


class Engine(ABC):
    """Runs the network on one RGB photo. Engines need not be thread-safe: the
    Detector serialises calls."""

    name: str
    device: str
    precision: str = "fp32"
    build: str | None = None  # which build of the engine's library, where it says (GET /model)
    # Why this engine and precision serve, in one line (PRECISION=auto's choice): /model
    # and the startup line say it.
    selection: str = ""

    @abstractmethod
    def predict(self, image: np.ndarray, min_score: float) -> Candidates:
        """RGB uint8 HxWx3 -> candidate boxes in image pixels with their class scores.

        Candidates whose scores are all <= min_score may be left out (darknet drops
        them itself); the request threshold is applied again afterwards."""

    def predict_many(self, images: list[np.ndarray], min_score: float) -> list[Candidates]:
        """Several photos of one size (tiles); engines that batch override this."""
        return [self.predict(image, min_score) for image in images]
