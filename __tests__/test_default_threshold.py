"""The model's own threshold where none is asked: DEFAULT_THRESHOLD, else the one
`evaluate --save-threshold` saved next to these very weights, else darknet's 0.25; the
API, /model, the Label Studio backend and `count` all use it."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time

import pytest
import requests
from support import DATA, DEMO_MODEL, ROOT, RunningService, photo_bytes, run_count, wait_until

from app.http.factory import create_app
from app.model.files import ModelError
from app.model.threshold import SavedThreshold, default_threshold, save_threshold, threshold_file
from app.settings import ConfigError, Settings


@pytest.fixture
def model_copy(tmp_path):
    """The demo model in a folder of its own (links), so a saved threshold lands there."""
    folder = tmp_path / "model"
    folder.mkdir()
    for path in DEMO_MODEL.iterdir():
        if path.suffix in (".cfg", ".weights", ".names", ".onnx"):
            (folder / path.name).symlink_to(path)
    return folder


def test_the_setting_wins_then_the_saved_threshold_of_these_weights_then_darknets(tmp_path):
    weights = tmp_path / "m.weights"
    weights.write_bytes(b"w")
    assert default_threshold(weights, "abc", None).value == 0.25
    save_threshold(weights, "abc", 0.31, "evaluate")
    assert default_threshold(weights, "abc", None).value == 0.31
    assert default_threshold(weights, "abc", 0.5).value == 0.5
    other = default_threshold(weights, "new-weights", None)
    assert other.value == 0.25 and "other weights" in other.source  # retrained: not inherited
    threshold_file(weights).write_text("{not json")
    with pytest.raises(ModelError, match="cannot be read as the saved threshold"):
        default_threshold(weights, "abc", None)


def test_a_running_service_follows_the_saved_file_and_keeps_the_last_good_one(tmp_path, caplog):
    weights = tmp_path / "m.weights"
    weights.write_bytes(b"w")
    followed = SavedThreshold(weights, "abc", None)
    assert (followed.value, followed.current().source) == (0.25, "darknet's default")
    save_threshold(weights, "abc", 0.31, "evaluate")
    assert (
        followed.value == 0.31
        and "m.weights.threshold.json (evaluate)" in followed.as_json()["default_threshold_source"]
    )
    save_threshold(weights, "abc", 0.42, "evaluate")  # a second save in the same second: a new inode
    assert followed.value == 0.42
    # Broken while the service runs: the last good threshold stays, the source and the log say so.
    threshold_file(weights).write_text("{not json")
    with caplog.at_level("WARNING"):
        assert followed.value == 0.42
    assert "kept, as m.weights.threshold.json cannot be used now" in followed.current().source
    assert "cannot be read as the saved threshold" in caplog.text
    threshold_file(weights).unlink()
    assert followed.current() == default_threshold(weights, "abc", None)
    # DEFAULT_THRESHOLD wins, and nothing is followed.
    save_threshold(weights, "abc", 0.31, "evaluate")
    assert SavedThreshold(weights, "abc", 0.5).value == 0.5


def test_an_unchanged_file_is_only_stat_ed_never_read_again(tmp_path, monkeypatch):
    weights = tmp_path / "m.weights"
    weights.write_bytes(b"w")
    save_threshold(weights, "abc", 0.31, "evaluate")
    followed = SavedThreshold(weights, "abc", None)
    reads = []
    monkeypatch.setattr("app.model.threshold.default_threshold", lambda *args: reads.append(args))
    for _ in range(100):
        assert followed.value == 0.31
    assert reads == []


@pytest.mark.e2e
def test_a_saved_threshold_reaches_a_running_service_within_seconds_without_a_restart(model_copy, tmp_path):
    service = RunningService({"MODEL_DIR": str(model_copy), "WORKERS": "2"}, tmp_path / "service.log")
    try:
        service.wait_ready()

        def model() -> dict:
            return requests.get(f"{service.url}/model", timeout=10).json()

        before = model()
        assert (before["default_threshold"], before["default_threshold_source"]) == (0.25, "darknet's default")
        weights = model_copy / "yolov3-tiny.weights"
        saved_at = time.monotonic()
        save_threshold(weights, before["files"][weights.name], 0.37, "evaluate, fp32, tiling auto")
        # Every worker (gunicorn hands requests to either of the two): a run of answers, all new.
        wait_until(lambda: all(model()["default_threshold"] == 0.37 for _ in range(8)), timeout=10)
        assert time.monotonic() - saved_at < 5
        after = model()
        assert after["default_threshold_source"] == "yolov3-tiny.weights.threshold.json (evaluate, fp32, tiling auto)"
        assert csv_threshold(service.post_photo("dog.jpg", format="csv").text) == "0.37"
        assert csv_threshold(service.post_photo("dog.jpg", format="csv", threshold=0.5).text) == "0.5"
        os.unlink(threshold_file(weights))  # removed: darknet's default again
        wait_until(lambda: all(model()["default_threshold"] == 0.25 for _ in range(8)), timeout=10)
        assert "default threshold now 0.37 (yolov3-tiny.weights.threshold.json" in service.output()
    finally:
        service.stop()


@pytest.mark.parametrize("value", ["1.5", "-0.1", "high"])
def test_a_default_threshold_setting_that_cannot_be_used_stops_the_start(value):
    with pytest.raises(ConfigError, match="DEFAULT_THRESHOLD"):
        Settings.from_env({"MODEL_DIR": str(DEMO_MODEL), "DEFAULT_THRESHOLD": value})


def csv_threshold(answer: str) -> str:
    (row,) = list(csv.DictReader(io.StringIO(answer)))
    return row["threshold"]


@pytest.mark.e2e
def test_evaluate_saves_it_and_the_api_and_count_count_with_it(model_copy, tmp_path):
    # A labelled photo: the API's own boxes on dog.jpg, as a lab would accept them.
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    (labelled / "dog.jpg").write_bytes(photo_bytes("dog.jpg"))
    (labelled / "dog.txt").write_text("16 0.33 0.64 0.34 0.52\n")  # the dog, in coco.names numbering
    env = {"PATH": "/usr/bin:/bin", "MODEL_DIR": str(model_copy)}
    result = subprocess.run(
        # The bicycle and truck nobody labelled decide too, as named: the threshold climbs above them.
        [sys.executable, "-m", "app", "evaluate", str(labelled), "--classes", "dog,bicycle,truck", "--save-threshold"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads(threshold_file(model_copy / "yolov3-tiny.weights").read_text())
    assert f"saved threshold {saved['threshold']:g}" in result.stderr
    assert saved["threshold"] != 0.25  # above the bicycle and truck the photo has no label for
    assert "a running service takes it within seconds, no restart" in result.stderr

    client = create_app(Settings(model_dir=model_copy, engine_threads=2)).test_client()
    model = client.get("/model").json
    assert model["default_threshold"] == saved["threshold"]
    assert "yolov3-tiny.weights.threshold.json" in model["default_threshold_source"]
    raw = {"data": photo_bytes("dog.jpg"), "headers": {"Content-Type": "image/jpeg"}}
    assert csv_threshold(client.post("/invocations?format=csv", **raw).text) == str(saved["threshold"])
    assert csv_threshold(client.post("/invocations?format=csv&threshold=0.5", **raw).text) == "0.5"

    output = tmp_path / "counts.csv"
    run_count(str(DATA / "dog.jpg"), "-o", str(output), model_dir=model_copy)
    assert csv_threshold(output.read_text()) == str(saved["threshold"])
