"""The SageMaker "bring your own container" contract."""

import io
import json
import threading

import pytest
import requests
from fakes import fake_app
from PIL import Image
from support import RunningService, free_port, photo_bytes

from app.model.sources import model_dir

DOG = photo_bytes("dog.jpg")


@pytest.mark.e2e
def test_sagemaker_bind_to_port_is_honoured(tmp_path):
    port = free_port()
    service = RunningService({"SAGEMAKER_BIND_TO_PORT": str(port), "WORKERS": "1"}, tmp_path / "service.log")
    service.url = f"http://127.0.0.1:{port}"  # not PORT: SageMaker's variable wins
    try:
        service.wait_ready()
        assert service.post_photo("dog.jpg").json()["stat"]["dog"] == 1
        with pytest.raises(requests.ConnectionError):  # and PORT, which it overrides, is not listened on
            requests.get(f"http://127.0.0.1:{service.port}/ping", timeout=5)
    finally:
        service.stop()


def test_opt_ml_model_is_the_model_dir_when_aimodel_is_empty(tmp_path):
    local, sagemaker = tmp_path / "aimodel", tmp_path / "opt-ml-model"
    local.mkdir()
    sagemaker.mkdir()
    assert model_dir({}, local, sagemaker) == sagemaker
    (local / "mine.weights").write_bytes(b"w")
    assert model_dir({}, local, sagemaker) == local  # a model in ./aimodel comes first
    assert model_dir({"MODEL_DIR": "/elsewhere"}, local, sagemaker).as_posix() == "/elsewhere"


def test_execution_parameters_are_the_real_limits(tmp_path):
    client = fake_app(tmp_path, workers=3, max_upload_mb=0.5, active_photos=2, queue_depth=10).test_client()
    assert client.get("/execution-parameters").get_json() == {
        "MaxConcurrentTransforms": 36,  # what the workers take without a refusal: 3 x (2 at work + 10 queued)
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 1,
    }
    # MaxPayloadInMB is at least 1 (SageMaker's unit); the service's own limit still holds.
    assert client.post("/invocations", data=b"\xff" * 600_000, content_type="image/jpeg").status_code == 413


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, image/jpeg;q=0.5"])
def test_json_unless_asked_otherwise(fake_client, accept):
    headers = {"Accept": accept} if accept else {}
    response = fake_client.post("/invocations", data=DOG, content_type="image/jpeg", headers=headers)
    assert response.status_code == 200 and response.mimetype == "application/json"


def test_accept_image_jpeg_gets_the_picture_and_the_counts_in_a_header(client):
    response = client.post("/invocations", data=DOG, content_type="image/jpeg", headers={"Accept": "image/jpeg"})
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(response.data)).size == (768, 576)
    assert json.loads(response.headers["X-Stat"])["dog"] == 1


def test_an_accept_it_cannot_produce_is_406(fake_client):
    response = fake_client.post(
        "/invocations", data=DOG, content_type="image/jpeg", headers={"Accept": "application/xml"}
    )
    assert response.status_code == 406
    assert response.get_json()["error"]["code"] == "not_acceptable"


def test_ping_answers_within_two_seconds_while_inference_runs(live_server):
    # kite.jpg is the largest sample photo; eight of them keep both workers busy.
    body = photo_bytes("kite.jpg")
    load = [
        threading.Thread(
            target=requests.post,
            args=(f"{live_server.url}/invocations",),
            kwargs={"data": body, "headers": {"Content-Type": "image/jpeg"}, "timeout": 60},
        )
        for _ in range(8)
    ]
    for thread in load:
        thread.start()
    try:
        for _ in range(5):
            assert requests.get(f"{live_server.url}/ping", timeout=2).status_code == 200
    finally:
        for thread in load:
            thread.join()
