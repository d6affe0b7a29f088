"""What gunicorn and nginx answer themselves is the service's JSON with the right status
(issue 33, round 4, row 8): a URL of 4-8 KB, `TE: gzip`, a control byte in a header, 100
headers, an `HTTP/2.0` request line and a full TMPDIR were gunicorn's or nginx's HTML
414/501/400/431/505/500. What nginx lets through, gunicorn now takes (its limits behind
the front are nginx's); what either refuses is {"error": {"code", "message"}}."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import requests
from front_clients import exchange, head
from support import RunningService, needs_tool, started

from app.http.gunicorn_errors import json_error_answer
from app.serve.front import nginx_binary

pytestmark = needs_tool(nginx_binary() is not None, "nginx is not installed", "nginx")


@pytest.fixture(scope="module")
def service(model_dir, tmp_path_factory):
    with started({"MODEL_DIR": str(model_dir), "WORKERS": "1"}, tmp_path_factory.mktemp("e") / "log") as running:
        yield running


SERVED = {
    "a URL of 4.5 KB": head("GET", "/ping?x=" + "a" * 4500),
    "a URL of 8 KB less 100 bytes": head("GET", "/ping?x=" + "a" * (8092 - len("GET /ping?x= HTTP/1.1"))),
    "TE: gzip": head("GET", "/ping", {"TE": "gzip"}),
    "100 headers": head("GET", "/ping", {f"X-Header-{number}": "v" for number in range(100)}),
    "500 headers": head("GET", "/ping", {f"X-H{number}": "v" for number in range(500)}),
}
REFUSED = {
    "a URL past 8 KB": (head("GET", "/ping?x=" + "a" * 9000), 414, "uri_too_long"),
    "Transfer-Encoding: gzip": (head("POST", "/invocations", {"Transfer-Encoding": "gzip"}), 501, "not_implemented"),
    "a control byte in a header's value": (head("GET", "/ping", {"X-Note": "a\x01b"}), 400, "bad_request"),
    "a control byte in a header's name": (head("GET", "/ping", {"X-No\x01te": "ab"}), 400, "bad_request"),
    "a header of 9 KB": (head("GET", "/ping", {"X-Big": "v" * 9000}), 431, "header_too_large"),
    "a head of 40 KB": (head("GET", "/ping", {f"X-H{n}": "v" * 40 for n in range(1000)}), 431, "header_too_large"),
    "an HTTP/2.0 request line": (b"GET /ping HTTP/2.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"),
    "HTTP/2 prior knowledge": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "http2_not_supported"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", SERVED)
def test_what_nginx_lets_through_gunicorn_takes(service, case):
    status, _, body = exchange(service.port, SERVED[case])
    assert status == 200 and json.loads(body) == {"data": "pong!"}, body


@pytest.mark.e2e
@pytest.mark.parametrize("case", REFUSED)
def test_what_either_refuses_is_json_with_the_right_status(service, case):
    raw, expected, code = REFUSED[case]
    status, headers, body = exchange(service.port, raw)
    assert status == expected, body
    assert headers["Content-Type"] == "application/json" and json.loads(body)["error"]["code"] == code


@pytest.mark.parametrize(("status", "code"), [(400, "bad_request"), (414, "uri_too_long"), (431, "header_too_large")])
def test_gunicorns_own_refusals_are_json(status, code):
    """gunicorn alone (FRONT=none) answers the same shape: its write_error is replaced."""
    answer = json_error_answer(status, "Reason", "Invalid HTTP Header: 'X-NOTE'" + "x" * 1000)
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(f"HTTP/1.1 {status} ".encode()) and b"Content-Type: application/json" in head_part
    error = json.loads(body)["error"]
    assert error["code"] == code and len(error["message"]) <= 200
    assert f"Content-Length: {len(body)}".encode() in head_part


@pytest.mark.e2e
@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="a tmpfs of its own needs root and unshare"
)
def test_a_full_tmpdir_is_a_json_500_with_the_request_id_in_the_log(model_dir, tmp_path):
    """nginx could not write an upload's temp file: its HTML 500. The service runs in a
    mount namespace of its own with a 4 MB tmpfs as TMPDIR."""
    small = tmp_path / "small"
    small.mkdir()
    command = [
        "unshare", "--mount", "--propagation", "private", "bash", "-c",
        f'mount -t tmpfs -o size=4m,mode=1777 tmpfs "{small}" && exec ./run.sh',
    ]  # fmt: skip
    running = RunningService(
        {"MODEL_DIR": str(model_dir), "WORKERS": "1", "TMPDIR": str(small)}, tmp_path / "log", command=command
    )
    try:
        running.wait_ready()
        answer = requests.post(
            f"{running.url}/invocations",
            data=b"\xff" * 6_000_000,
            headers={"Content-Type": "image/jpeg", "X-Request-ID": "full-disk-1"},
            timeout=30,
        )
        assert answer.status_code == 500, answer.text
        error = answer.json()["error"]
        assert error["code"] == "internal_error" and error["request_id"] == "full-disk-1"
        assert answer.headers["X-Request-ID"] == "full-disk-1"
        assert requests.get(f"{running.url}/ping", timeout=5).status_code == 200
    finally:
        running.stop()
    log = running.output()
    assert "No space left on device" in log
    front_lines = [line for line in log.splitlines() if '"request_id":"full-disk-1"' in line]
    assert front_lines and '"status":500' in front_lines[0] and '"client":"127.0.0.1"' in front_lines[0]


@pytest.mark.e2e
def test_gunicorn_alone_answers_its_refusals_as_json_and_keeps_its_own_limits(model_dir, tmp_path):
    running = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1", "FRONT": "none"}, tmp_path / "log")
    try:
        running.wait_ready()
        for raw, expected, code in (
            (head("GET", "/ping", {"X-Note": "a\x01b"}), 400, "bad_request"),
            (head("GET", "/ping?x=" + "a" * 4500), 414, "uri_too_long"),  # gunicorn's own limit, exposed alone
        ):
            status, headers, body = exchange(running.port, raw)
            assert status == expected and headers["Content-Type"] == "application/json", body
            assert json.loads(body)["error"]["code"] == code
    finally:
        running.stop()
