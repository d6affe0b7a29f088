"""API keys at the front, over a real service (issue 33, round 4, rows 1 and 2): nginx's
pre-check reads the same header forms as the app (api_keys.py): Label Studio's Basic
auth (any user name, the key as password) gets in, a key with symbols keeps the
pre-check on, and every method is checked from its head; a method that carries no
photo takes no body. Hostile clients connect from 127.0.0.2."""

from __future__ import annotations

import base64
import socket

import pytest
import requests
from front_clients import connect, error_code, exchange, head, ping_seconds, run_dir, temp_bytes, timed
from support import needs_tool, photo_bytes, started, wait_until

from app.serve.front import nginx_binary

pytestmark = [
    pytest.mark.e2e,
    needs_tool(nginx_binary() is not None, "nginx is not installed", "nginx"),
]

SYMBOLS_KEY = "S3cret!Key#2026"
CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    '<Label value="Dog"/></RectangleLabels></View>'
)
FORTY_MB = 40_000_000


@pytest.fixture(scope="module")
def keyed(model_dir, tmp_path_factory):
    with started(
        {"MODEL_DIR": str(model_dir), "WORKERS": "1", "API_KEYS": f"{SYMBOLS_KEY},lab-key-1"},
        tmp_path_factory.mktemp("keys") / "log",
    ) as service:
        yield service


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("user", ["", "x", "label-studio", "admin@lab.example"])
def test_label_studio_with_basic_auth_and_the_key_as_password_gets_in(keyed, user):
    """Its /setup, /predict and /webhook were nginx's 401: the pre-check knew Bearer and
    X-API-Key only. Whatever user name the form was given, the password is what counts."""
    url = f"{keyed.url}/label-studio"
    auth = {"Authorization": basic(user, SYMBOLS_KEY)}
    assert requests.get(f"{url}/health", headers=auth, timeout=10).status_code == 200
    setup = requests.post(f"{url}/setup", json={"project": "1.1", "schema": CONFIG}, headers=auth, timeout=10)
    assert setup.status_code == 200, setup.text
    predict = requests.post(f"{url}/predict", json={"tasks": [], "label_config": CONFIG}, headers=auth, timeout=30)
    assert predict.status_code == 200, predict.text
    webhook = requests.post(f"{url}/webhook", json={"action": "PROJECT_UPDATED"}, headers=auth, timeout=10)
    assert webhook.status_code == 200


def test_a_key_with_symbols_is_accepted_in_every_form_and_keeps_the_pre_check_on(keyed):
    """A key with `!` and `#` switched the pre-check off: keyless bodies were taken."""
    for headers in (
        {"Authorization": f"Bearer {SYMBOLS_KEY}"},
        {"X-API-Key": SYMBOLS_KEY},
        {"Authorization": basic("key", SYMBOLS_KEY)},
        {"X-API-Key": "lab-key-1"},
    ):
        answer = requests.post(
            f"{keyed.url}/invocations", data=photo_bytes("dog.jpg"),
            headers={**headers, "Content-Type": "image/jpeg"}, timeout=60,
        )  # fmt: skip
        assert answer.status_code == 200 and answer.json()["stat"]["dog"] == 1, headers
    # No key, a wrong one, the key as a Basic user name: refused from the head, no body sent.
    for headers in ({}, {"Authorization": basic("u", "S3cret!Key#2025")}, {"Authorization": basic(SYMBOLS_KEY, "")}):
        raw = head("POST", "/invocations", {**headers, "Content-Type": "image/jpeg", "Content-Length": str(FORTY_MB)})
        status, answer_headers, body = exchange(keyed.port, raw, source="127.0.0.2")
        assert status == 401 and error_code(body) == "unauthorized", headers
        assert answer_headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "status"),
    [("GET", 401), ("PATCH", 405), ("DELETE", 405), ("PUT", 405), ("QUERY", 405), ("OPTIONS", 413)],
)
def test_every_method_is_refused_from_its_head_without_a_key_or_a_route(keyed, method, status):
    """Keyless GETs with 40 MB bodies were parked by nginx (795 MB of temp files from 20).
    A preflight needs no key and takes no body; methods no route takes are a 405."""
    path = "/invocations" if method != "OPTIONS" else "/model"
    raw = head(method, path, {"Content-Length": str(FORTY_MB)})
    answer, headers, body = exchange(keyed.port, raw, source="127.0.0.2")
    assert answer == status, body
    if status == 405:
        assert headers["Allow"] == "GET, HEAD, POST, OPTIONS" and error_code(body) == "method_not_allowed"
    if status == 413:
        assert f"a {method} request carries no body" in body
    # The open routes stay open without a key, and take no body either.
    assert requests.get(f"{keyed.url}/ping", timeout=5).status_code == 200
    answer, _, body = exchange(keyed.port, head("GET", "/ping", {"Content-Length": "10"}) + b"0123456789")
    assert answer == 413 and error_code(body) == "payload_too_large" and "a GET request" in body


@pytest.mark.parametrize("framing", [{"Content-Length": str(FORTY_MB)}, {"Transfer-Encoding": "chunked"}])
def test_a_key_holders_get_with_a_body_is_refused_from_its_head(keyed, framing):
    raw = head("GET", "/model", {"X-API-Key": "lab-key-1", **framing})
    status, _, body = exchange(keyed.port, raw, source="127.0.0.2")
    assert status == 413 and "no body" in body
    assert requests.get(f"{keyed.url}/model", headers={"X-API-Key": "lab-key-1"}, timeout=10).status_code == 200
    # A GET of a POST-only route is the app's 405, body or not: from the head, its Allow.
    status, headers, body = exchange(keyed.port, head("GET", "/invocations", {"X-API-Key": "lab-key-1", **framing}))
    assert status == 405 and headers["Allow"] == "POST, OPTIONS" and error_code(body) == "method_not_allowed"


def test_keyless_bodies_park_nothing_and_a_key_holder_is_served(keyed):
    """20 keyless GETs sending 40 MB bodies: nginx answers each from its head and drops
    what follows; no temp file grows, and a key holder's photo and /ping go on."""
    held: list[socket.socket] = []
    folder = run_dir(keyed.process.pid)
    chunk = b"\xff" * 1_000_000
    # What the measure sees: a key holder's upload on its way is in a temp file.
    with connect(keyed.port, "127.0.0.3") as upload:
        upload.sendall(head("POST", "/invocations", {"X-API-Key": "lab-key-1", "Content-Length": str(FORTY_MB)}))
        upload.sendall(chunk * 2)
        wait_until(lambda: temp_bytes(folder) > 1_000_000)
    try:
        for _ in range(20):
            sock = connect(keyed.port, "127.0.0.2")
            sock.sendall(head("GET", "/invocations", {"Content-Length": str(FORTY_MB)}))
            assert sock.recv(12) == b"HTTP/1.1 401"  # from the head, before any of the body
            held.append(sock)
        for sock in held:  # a few MB each after the answer, as a client that does not listen
            for _ in range(3):
                try:
                    sock.sendall(chunk)
                except OSError:
                    break
        assert temp_bytes(folder) == 0
        seconds, answer = timed(
            lambda: requests.post(
                f"{keyed.url}/invocations", data=photo_bytes("dog.jpg"),
                headers={"X-API-Key": "lab-key-1", "Content-Type": "image/jpeg"}, timeout=60,
            )
        )  # fmt: skip
        pings = ping_seconds(keyed.url)
        print(f"20 keyless 40 MB GETs: a key holder's photo {seconds:.2f} s, /ping at most {max(pings):.3f} s")
        assert answer.status_code == 200 and seconds < 2 and max(pings) < 0.5
    finally:
        for sock in held:
            sock.close()
