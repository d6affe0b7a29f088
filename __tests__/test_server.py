"""The service as users run it: ./run.sh, gunicorn, HTTP over loopback."""

import base64

import pytest
import requests
from support import ROOT, RunningService, photo_bytes

pytestmark = pytest.mark.e2e  # every test here starts the service


def found(stat: dict) -> set:
    return {name for name, count in stat.items() if count}


def test_readme_command_starts_the_service_and_stops_cleanly(tmp_path):
    # Exactly the README's command (the demo model in aimodel/, the port from PORT).
    service = RunningService({}, tmp_path / "service.log")
    try:
        service.wait_ready()
        response = service.post_photo("dog.jpg", timeout=30)
        assert response.status_code == 200
        assert {"dog", "bicycle"} <= found(response.json()["stat"])
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        assert service.stop() == 0, service.output()
    log = service.output()
    assert "running gunicorn..." in log
    assert "model loaded" in log
    assert f'"request_id":"{response.headers["X-Request-ID"]}"' in log  # one structured line per request


def test_three_request_forms_over_http(live_server):
    dog = photo_bytes("dog.jpg")
    url = f"{live_server.url}/invocations"
    responses = [
        requests.post(url, json={"image": base64.b64encode(dog).decode(), "filename": "dog.jpg"}, timeout=30),
        requests.post(url, files={"image": ("dog.jpg", dog, "image/jpeg")}, data={"filename": "dog.jpg"}, timeout=30),
        requests.post(url, data=dog, headers={"Content-Type": "image/jpeg"}, timeout=30),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200]
    stats = [r.json()["stat"] for r in responses]
    assert stats[0] == stats[1] == stats[2]


def test_a_bad_model_or_setting_stops_the_start_with_one_clear_line(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "x.cfg").write_text((ROOT / "aimodel" / "yolov3-tiny.cfg").read_text())
    (tmp_path / "model" / "x.names").write_text("Rotifer\nDead\n")
    (tmp_path / "model" / "x.weights").symlink_to(ROOT / "aimodel" / "yolov3-tiny.weights")
    for env, message in (
        ({"MODEL_DIR": str(tmp_path / "missing")}, "does not exist"),
        ({"MODEL_DIR": str(tmp_path / "model")}, "classes=80 but x.names has 2 names"),
        ({"BACKEND": "tensorflow"}, "BACKEND='tensorflow' is not one of"),
        ({"BACKEND": "darknet", "LIBDARKNET_PATH": "/nowhere"}, "LIBDARKNET_PATH=/nowhere: no libdarknet.so there"),
    ):
        service = RunningService({"WORKERS": "1", **env}, tmp_path / "service.log")
        assert service.process.wait(60) != 0
        errors = [line for line in service.output().splitlines() if line.startswith("cannot start:")]
        assert len(errors) == 1 and message in errors[0], service.output()
