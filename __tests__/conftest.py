"""Fixtures in layers: model files -> settings -> detector -> app -> client -> live server.

Everything is real: the pretrained COCO yolov3-tiny (fetched by ./test.sh into
aimodel/), the sample photos in data/, and gunicorn started by ./run.sh on loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import DEMO_MODEL, RunningService

from app.http.factory import create_app
from app.inference.detector import Detector, build_detector
from app.settings import Settings


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (DEMO_MODEL / "yolov3-tiny.weights").is_file():
        pytest.fail("the demo model is missing: run ./test.sh, or scripts/fetch_demo_model.py first")
    return DEMO_MODEL


@pytest.fixture(scope="session")
def settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, engine_threads=2)


@pytest.fixture(scope="session")
def detector(settings: Settings) -> Detector:
    return build_detector(settings)


@pytest.fixture(scope="session")
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def live_server(model_dir: Path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("live_server") / "service.log"
    service = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "2"}, log_path)
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()
