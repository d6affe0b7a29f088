"""The interface every inference engine fills."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..detection import Candidates


class EngineUnavailable(RuntimeError):
    """The engine's library, device or model support is missing on this machine."""


class Engine(ABC):
    """Runs the network on one RGB photo. Engines need not be thread-safe: the
    Detector serialises calls."""

    name: str
    device: str

    @abstractmethod
    def predict(self, image: np.ndarray) -> Candidates:
        """RGB uint8 HxWx3 -> every candidate box in image pixels with its class scores."""
