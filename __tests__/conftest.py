"""Fixtures in layers: model files -> settings -> detector -> app -> client -> live server.

Everything is real: the pretrained COCO yolov3-tiny (fetched by ./test.sh into
aimodel/), the sample photos in data/, and gunicorn started by ./run.sh on loopback.
Tests of the HTTP layer itself (CORS, auth, errors, parameters, the API document)
run on `fake_app`: the same factory, a fixed engine, no model file.

Every test falls in one tier, from what it uses (`./test.sh fast` runs the first two):
- unit: no model file (support.py guards it: opening one fails the test);
- integration: the real model in this process (its fixtures all start at `model_dir`);
- e2e: real processes (marked `e2e`, or using `live_server`), and soaks that run an
  engine for minutes; support.py refuses to start a process from any other tier, so a
  slow test cannot hide in the fast ones.

Whatever a run starts dies with it, however pytest ends (reaper.py). A tool the suite
needs is a skip where it is missing, a failure under CI=true (support.require_tool).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import reaper
import support
from fakes import fake_app as make_fake_app
from support import DEMO_MODEL, copy_model, started

from app.http.factory import create_app
from app.inference.detector import Detector, build_detector
from app.model.files import ModelDescription, load_model_description
from app.settings import Settings


def pytest_configure(config: pytest.Config) -> None:
    # In the controller only: xdist's workers inherit its marker, and its watchdog
    # counts them (and all they start) among the run's processes.
    if "PYTEST_XDIST_WORKER" not in os.environ:
        capture = config.pluginmanager.getplugin("capturemanager")
        # The watchdog's stderr is the terminal's, not pytest's capture of it.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reaper.start()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs_tool"):  # before a fixture starts a service without it
        support.require_tool(*mark.args)


def tier_of(item: pytest.Item) -> str:
    if item.get_closest_marker("e2e") or "live_server" in item.fixturenames:
        return "e2e"
    return "integration" if "model_dir" in item.fixturenames else "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    support.TIER = tier_of(item)  # setup, call and teardown alike
    try:
        return (yield)
    finally:
        support.TIER = None


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (DEMO_MODEL / "yolov3-tiny.weights").is_file():
        pytest.fail("the demo model is missing: run ./test.sh, or scripts/fetch_demo_model.py first")
    return DEMO_MODEL


@pytest.fixture(scope="session")
def demo_model(model_dir: Path) -> ModelDescription:
    return load_model_description(model_dir)


@pytest.fixture
def model_copy(model_dir: Path, tmp_path: Path) -> Path:
    """The demo model in a directory of the test's own (support.copy_model)."""
    return copy_model(model_dir, tmp_path / "model")


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
def fake_app(tmp_path_factory):
    """The service's whole Flask app on a fixed engine (fakes.py): no weights, answers at once."""
    return make_fake_app(tmp_path_factory.mktemp("fake_model"))


@pytest.fixture
def fake_client(fake_app):
    return fake_app.test_client()


@pytest.fixture(scope="session")
def live_server(model_dir: Path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("live_server") / "service.log"
    with started({"MODEL_DIR": str(model_dir), "WORKERS": "2"}, log_path) as service:
        yield service
