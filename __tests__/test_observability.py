"""What the service shows about itself, and to whom: /metrics, one log line per
request, API keys, and nothing internal in any answer."""

import json
import re

import pytest
import requests
import tomllib
from fakes import fake_app
from flask import Flask
from support import ROOT, RunningService, photo_bytes, post_photo

from app import __version__
from app.settings import ConfigError, Settings

DOG = photo_bytes("dog.jpg")


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if match and match.group(1) == name:
            got = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
            if got == wanted:
                return float(match.group(3))
    return 0.0


def test_metrics_add_up_across_workers(live_server):
    url = live_server.url
    before = requests.get(f"{url}/metrics", timeout=5).text
    for _ in range(6):  # spread over both workers by the kernel
        assert post_photo(url, DOG, timeout=30).ok
    post_photo(url, b"", timeout=30)
    response = requests.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    after = response.text

    def grew(name: str, **labels) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    ok = {"method": "POST", "endpoint": "/invocations", "status": "2xx"}  # status classes: a fixed set
    assert grew("detector_http_requests_total", **ok) == 6
    assert grew("detector_http_requests_total", **{**ok, "status": "4xx"}) == 1
    for stage in ("decode", "inference", "annotate", "encode"):
        assert grew("detector_stage_seconds_count", stage=stage) == 6
    assert grew("detector_objects_total", class_name="dog") == 6
    assert metric(after, "detector_model_load_seconds") > 0
    assert 'detector_stage_seconds_bucket{le="0.1",stage="inference"}' in after


def test_one_structured_log_line_per_request(live_server):
    response = requests.post(
        f"{live_server.url}/invocations?filename=dog.jpg",
        data=DOG,
        headers={"Content-Type": "image/jpeg", "X-Request-ID": "check-log-line-1"},
        timeout=30,
    )
    assert response.headers["X-Request-ID"] == "check-log-line-1"
    lines = [line for line in live_server.output().splitlines() if "check-log-line-1" in line]
    assert len(lines) == 1
    entry = json.loads(lines[0].split("app.request: ", 1)[1])
    assert entry["status"] == 200 and entry["bytes_in"] == len(DOG) and entry["filename"] == "dog.jpg"
    assert (entry["width"], entry["height"]) == (768, 576)
    assert entry["counts"]["dog"] >= 1
    assert set(entry["stage_ms"]) == {"decode", "inference", "annotate", "encode"}


def test_a_refused_photo_logs_its_error_code_and_file(live_server):
    requests.post(
        f"{live_server.url}/invocations?filename=slide-7.jpg",
        data=b"not a photo",
        headers={"Content-Type": "image/jpeg", "X-Request-ID": "check-log-line-2"},
        timeout=30,
    )
    (line,) = [line for line in live_server.output().splitlines() if "check-log-line-2" in line]
    entry = json.loads(line.split("app.request: ", 1)[1])
    assert (entry["status"], entry["error"], entry["filename"]) == (400, "invalid_image", "slide-7.jpg")


def test_build_info_says_which_model_engine_and_version_answer(live_server, model_dir):
    model = requests.get(f"{live_server.url}/model", timeout=5).json()
    text = requests.get(f"{live_server.url}/metrics", timeout=5).text
    labels = {
        "model_sha256": model["files"]["yolov3-tiny.weights"][:12],
        "engine": model["engine"],
        "device": model["device"],
        "precision": model["precision"],
        "version": __version__,
    }
    assert metric(text, "detector_build_info", **labels) == 1
    assert model["version"] == __version__


def test_the_version_is_the_projects():
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == __version__


@pytest.mark.e2e
def test_log_format_json_makes_every_line_a_json_record(tmp_path, model_dir):
    service = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1", "LOG_FORMAT": "json"}, tmp_path / "log")
    try:
        service.wait_ready()
        service.post_photo("dog.jpg", filename="dog.jpg")
        service.post_photo("dog.jpg", filename="x.jpg", threshold="none")  # a refusal: 400 invalid_parameter
    finally:
        assert service.stop() == 0, service.output()
    records = [json.loads(line) for line in service.output().splitlines()]  # every line, or this raises
    assert all({"time", "level", "logger", "pid"} <= set(record) for record in records)
    requests_logged = [record for record in records if record["logger"] == "app.request"]
    assert [(r["status"], r.get("filename")) for r in requests_logged] == [(200, "dog.jpg"), (400, None)]
    assert requests_logged[0]["counts"]["dog"] == 1 and requests_logged[1]["error"] == "invalid_parameter"
    assert any(record["logger"] == "gunicorn.error" for record in records)  # gunicorn's own lines too


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    return fake_app(tmp_path_factory.mktemp("m"), api_keys=("k-one", "k-two")).test_client()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"X-API-Key": "k-one-but-longer"}, 401),
        ({"Authorization": "Basic k-one"}, 401),
        ({"Authorization": "Bearer k-two"}, 200),
        ({"X-API-Key": "k-one"}, 200),
    ],
)
def test_api_keys_guard_invocations(guarded, headers, status):
    response = guarded.post("/invocations", data=DOG, content_type="image/jpeg", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_api_keys_leave_ping_and_preflight_open(guarded):
    assert guarded.get("/ping").status_code == 200
    assert (
        guarded.options(
            "/invocations", headers={"Origin": "http://lab", "Access-Control-Request-Method": "POST"}
        ).status_code
        == 200
    )
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"X-API-Key": "k-two"}).status_code == 200


def test_api_keys_from_a_file(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# lab front end\nfront-end-key\n\nscript-key\n")
    assert Settings.from_env({"API_KEYS": "a", "API_KEYS_FILE": str(keys)}).api_keys == (
        "a",
        "front-end-key",
        "script-key",
    )
    with pytest.raises(ConfigError, match="API_KEYS_FILE"):
        Settings.from_env({"API_KEYS_FILE": str(tmp_path / "missing")})


@pytest.mark.e2e
def test_api_keys_on_the_real_server(tmp_path):
    service = RunningService({"API_KEYS": "lab-secret", "WORKERS": "1"}, tmp_path / "service.log")
    try:
        service.wait_ready()  # /ping needs no key: health checks keep working
        url = f"{service.url}/invocations"
        assert requests.post(url, data=DOG, headers={"Content-Type": "image/jpeg"}, timeout=30).status_code == 401
        headers = {"Content-Type": "image/jpeg", "Authorization": "Bearer lab-secret"}
        assert requests.post(url, data=DOG, headers=headers, timeout=30).status_code == 200
    finally:
        service.stop()


def test_a_server_fault_is_a_500_with_a_request_id_and_no_internals(tmp_path, caplog):
    app: Flask = fake_app(tmp_path)

    @app.get("/explode")
    def explode():
        raise RuntimeError(f"secret detail from {__file__}")

    response = app.test_client().get("/explode", headers={"X-Request-ID": "fault-42"})
    assert response.status_code == 500
    error = response.get_json()["error"]
    assert error["code"] == "internal_error" and error["request_id"] == "fault-42"
    assert "secret" not in response.get_data(as_text=True) and "/" not in error["message"]
    assert any("fault-42" in record.getMessage() and record.exc_info for record in caplog.records)


def test_answers_reveal_no_versions_or_paths(live_server):
    for response in (
        requests.get(f"{live_server.url}/nowhere", timeout=5),
        requests.post(f"{live_server.url}/invocations", data=b"x", headers={"Content-Type": "text/plain"}, timeout=5),
        requests.post(f"{live_server.url}/invocations", data=b"x", headers={"Content-Type": "image/png"}, timeout=5),
    ):
        text = response.text + " ".join(response.headers.values())
        assert not re.search(r"\d+\.\d+\.\d+|Traceback|/work/|site-packages|\.py\b", text), text
        assert response.headers["Server"] in ("nginx", "gunicorn")  # no version: server_tokens off
