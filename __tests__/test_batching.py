"""Dynamic batching across requests, on the real onnxruntime engine: photos of several
requests share forward passes and each request still gets exactly its own answer."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support import RunningService, photo_bytes, photo_rgb

from app.inference.detector import Detector
from app.inference.engines import create_engine
from app.model.files import load_model_description
from app.settings import Settings, request_threads
from app.vision.detection import DetectOptions

PHOTOS = ("dog.jpg", "person.jpg", "horses.jpg", "eagle.jpg", "giraffe.jpg", "kite.jpg")


@pytest.fixture(scope="module")
def engine(model_dir):
    return create_engine("onnxruntime", load_model_description(model_dir), threads=2, device="cpu")


def detector_with(engine, model_dir, max_batch, delay_s):
    return Detector(engine, load_model_description(model_dir), max_batch=max_batch, max_batch_delay_s=delay_s)


def test_photos_of_several_requests_share_a_forward_pass_and_keep_their_own_answers(engine, model_dir):
    alone = detector_with(engine, model_dir, 1, 0)
    thresholds = {name: 0.2 + 0.05 * index for index, name in enumerate(PHOTOS)}  # one per request
    expected = {
        name: alone.detect(photo_rgb(name), DetectOptions(threshold=thresholds[name], tiling="off")) for name in PHOTOS
    }
    batched = detector_with(engine, model_dir, 4, 0.2)  # a long delay: the six meet at the engine
    start = threading.Barrier(len(PHOTOS))

    def ask(name):
        start.wait()
        return name, batched.detect(photo_rgb(name), DetectOptions(threshold=thresholds[name], tiling="off"))

    with ThreadPoolExecutor(len(PHOTOS)) as pool:
        answers = dict(pool.map(ask, PHOTOS))
    assert max(batched.batcher.batch_sizes) > 1 and max(batched.batcher.batch_sizes) <= 4
    for name in PHOTOS:
        got, want = answers[name], expected[name]
        assert [d.class_name for d in got] == [d.class_name for d in want], name
        for mine, theirs in zip(got, want, strict=True):
            assert mine.confidence == pytest.approx(theirs.confidence, abs=1e-4)
            assert mine.box == pytest.approx(theirs.box, abs=0.05)


def test_with_no_delay_a_lone_photo_runs_alone(engine, model_dir):
    batched = detector_with(engine, model_dir, 8, 0.0)
    assert batched.detect(photo_rgb("dog.jpg"), DetectOptions(tiling="off"))
    assert batched.batcher.batch_sizes[-1] == 1


def test_a_batch_needs_as_many_photos_at_work():
    _, active, depth, threads = request_threads({"MAX_BATCH": "8"})
    assert active == 8 and threads == 8 + depth + 4
    assert Settings.from_env({"MODEL_DIR": "aimodel"}).max_batch == 1  # the CPU's default: no batching


@pytest.mark.e2e
def test_with_batching_on_each_request_still_gets_its_own_counts(model_dir, tmp_path):
    service = RunningService(
        {"MODEL_DIR": str(model_dir), "WORKERS": "1", "MAX_BATCH": "4", "MAX_BATCH_DELAY_MS": "20"}, tmp_path / "log"
    )
    try:
        service.wait_ready()

        def send(name):
            response = requests.post(
                f"{service.url}/invocations?return_image=false&tiling=off",
                data=photo_bytes(name),
                headers={"Content-Type": "image/jpeg"},
                timeout=60,
            )
            return name, response.json()["stat"]

        alone = dict(send(name) for name in PHOTOS)
        with ThreadPoolExecutor(12) as pool:
            together = list(pool.map(send, PHOTOS * 2))
    finally:
        service.stop()
    for name, stat in together:
        assert stat == alone[name], name
