"""The model's own threshold where none is asked: DEFAULT_THRESHOLD, else the one
`evaluate --save-threshold` saved next to these very weights, else darknet's 0.25; the
API, /model, the Label Studio backend and `count` all use it."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from support import DATA, DEMO_MODEL, ROOT, photo_bytes, run_count

from app.http.factory import create_app
from app.model.files import ModelError
from app.model.threshold import default_threshold, save_threshold, threshold_file
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
        [sys.executable, "-m", "app", "evaluate", str(labelled), "--save-threshold"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads(threshold_file(model_copy / "yolov3-tiny.weights").read_text())
    assert f"saved threshold {saved['threshold']:g}" in result.stderr
    assert saved["threshold"] != 0.25  # here: above the bicycle and truck the photo has no label for

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
