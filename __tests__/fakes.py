"""A detector with a fixed engine: the service's own Detector, tiling, NMS and counting
over an engine that finds the same organisms in every photo, so the HTTP layer can be
tested in-process without weights (as roboflow's stub models and LitServe's lambda
model do). What the real model finds is tested on the real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.inference.detector import Detector
from app.inference.engines import Engine
from app.model.darknet_cfg import NetworkInput
from app.model.files import ModelDescription, ModelFiles
from app.vision.detection import Candidates

FAKE_CLASSES = ("Rotifer", "One-Egg-Carrier", "Dead")
# (class, score, box as fractions of the photo: x, y, width, height), far apart so NMS keeps all.
FAKE_FINDINGS = (
    (0, 0.9, (0.10, 0.10, 0.10, 0.10)),
    (0, 0.6, (0.60, 0.15, 0.10, 0.10)),
    (2, 0.4, (0.30, 0.60, 0.12, 0.12)),
)
# What the fake counts in a photo that is not tiled, at the default threshold.
FAKE_STAT = {"Rotifer": 2, "One-Egg-Carrier": 0, "Dead": 1}


class FixedEngine(Engine):
    name = "fixed"
    device = "cpu"

    def __init__(self, findings=FAKE_FINDINGS, classes: int = len(FAKE_CLASSES)):
        self.findings = findings
        self.classes = classes
        self.calls = 0

    def predict(self, image: np.ndarray, min_score: float) -> Candidates:
        self.calls += 1
        height, width = image.shape[:2]
        boxes = np.array([[x * width, y * height, w * width, h * height] for _, _, (x, y, w, h) in self.findings])
        scores = np.zeros((len(self.findings), self.classes), dtype=np.float32)
        for row, (class_id, score, _) in enumerate(self.findings):
            scores[row, class_id] = score
        return Candidates(boxes.reshape(-1, 4).astype(np.float32), scores)


def fake_detector(directory: Path, engine: Engine | None = None, **options) -> Detector:
    """A Detector on FixedEngine; `directory` gets stand-in files so /model can hash them."""
    files = ModelFiles(directory, directory / "fake.cfg", directory / "fake.weights", directory / "fake.names")
    files.cfg.write_text("[net]\nwidth=416\nheight=416\nchannels=3\n")
    files.weights.write_bytes(b"no network: a fixed engine answers")
    files.names.write_text("\n".join(FAKE_CLASSES) + "\n")
    model = ModelDescription(files, FAKE_CLASSES, NetworkInput(416, 416, 3, False), cfg_sections=())
    return Detector(engine or FixedEngine(), model, **options)


def fake_app(directory: Path, detector: Detector | None = None, **settings):
    """The service's Flask app, settings as given, on a fixed engine."""
    from app.http.factory import create_app
    from app.settings import Settings

    return create_app(Settings(model_dir=directory, **settings), detector=detector or fake_detector(directory))
