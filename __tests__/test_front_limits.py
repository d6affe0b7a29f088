"""The nginx front's own refusals and what one client may hold of it, over a real
service started by run.sh: requests nginx refuses itself are the service's JSON with
the right status, one client's connections and parked uploads are bounded while
others are served, and with API keys an upload without one is refused from its head.
Hostile clients connect from other loopback addresses (127.0.0.2, ...): the limits are
per address, and the normal client is 127.0.0.1."""

import contextlib
import json
import socket
import time
from pathlib import Path

import pytest
import requests
from front_clients import exchange
from support import RunningService, needs_tool, photo_bytes, started, wait_until

from app.serve.front import CONNECTIONS_PER_CLIENT, UPLOADS_PER_CLIENT, nginx_binary

pytestmark = [
    pytest.mark.e2e,
    needs_tool(nginx_binary() is not None, "nginx is not installed", "nginx"),
]


@pytest.fixture(scope="module")
def service(model_dir, tmp_path_factory):
    with started({"MODEL_DIR": str(model_dir), "WORKERS": "1"}, tmp_path_factory.mktemp("f") / "log") as running:
        yield running


NGINX_REFUSALS = {
    "HTTP/2 prior knowledge": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "http2_not_supported"),
    "CONNECT": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 405, "method_not_allowed"),
    "OPTIONS *": (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "a URL of 9000 characters": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    "a request line that is not one": (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    "TRACE": (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
}


@pytest.mark.parametrize("case", NGINX_REFUSALS)
def test_the_fronts_own_refusals_are_json_with_the_right_status(service, case):
    """They were nginx's HTML 500 (a redirect to a named location fails without a URI)."""
    raw, status, code = NGINX_REFUSALS[case]
    answer, headers, body = exchange(service.port, raw)
    assert answer == status, body
    assert headers["Content-Type"] == "application/json" and json.loads(body)["error"]["code"] == code
    if status == 405:
        assert headers["Allow"] == "GET, HEAD, POST, OPTIONS"


def stalled_upload(port: int, source: str, length: int = 5_000_000) -> socket.socket:
    """A POST whose head is in and whose body never comes: a parked upload."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + b"\xff" * 100_000
    )
    return sock


def nginx_memory_mb(master_pid: int) -> float:
    total = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            if fields["Name"].strip() == "nginx":
                total += int(fields["VmRSS"].split()[0]) / 1024
    return total


def test_one_clients_parked_uploads_are_bounded_and_others_are_served(service):
    """One client parked uploads without a key; its connections filled nginx and its
    bodies took nginx to 1.1 GB. Now past UPLOADS_PER_CLIENT it gets a JSON 429 at once,
    /ping and photos of others are answered, and nginx's memory stays small."""
    parked = []
    try:
        for _ in range(UPLOADS_PER_CLIENT):
            parked.append(stalled_upload(service.port, "127.0.0.2"))
        wait_until(lambda: nginx_memory_mb(service.process.pid) > 0)
        status, headers, body = exchange(
            service.port,
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\n0123",
            source="127.0.0.2",
        )
        assert status == 429 and json.loads(body)["error"]["code"] == "too_many_requests"
        assert headers["Retry-After"] == "1"
        assert requests.get(f"{service.url}/ping", timeout=5).status_code == 200
        assert service.post_photo("dog.jpg").json()["stat"]["dog"] == 1
        # Each parked upload holds at most one 256 KB buffer of nginx's memory.
        assert nginx_memory_mb(service.process.pid) < 150
    finally:
        for sock in parked:
            sock.close()


def test_one_client_cannot_take_every_connection(service):
    """About 4150 slow POSTs from one client took all of nginx's 4096 connections, /ping
    included; now that client's are bounded and the others' go on."""
    held = []
    try:
        refused = 0
        for _ in range(CONNECTIONS_PER_CLIENT + 20):
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=10, source_address=("127.0.0.3", 0))
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")  # a head never finished: held by nginx
            held.append(sock)
        for _ in range(CONNECTIONS_PER_CLIENT + 20):  # and as many whose head is in, their body parked
            with contextlib.suppress(OSError):
                sock = stalled_upload(service.port, "127.0.0.4")
                held.append(sock)
                sock.settimeout(0.05)
                with contextlib.suppress(TimeoutError):
                    if sock.recv(100).startswith(b"HTTP/1.1 429"):
                        refused += 1
        assert refused >= 20
        started = time.monotonic()
        assert requests.get(f"{service.url}/ping", timeout=5).status_code == 200
        assert time.monotonic() - started < 5
        assert service.post_photo("dog.jpg").status_code == 200
    finally:
        for sock in held:
            sock.close()


def test_with_api_keys_an_upload_without_a_key_is_refused_from_its_head(model_dir, tmp_path):
    """The key was checked only once the body was in: an upload could be parked with none."""
    running = RunningService(
        {"MODEL_DIR": str(model_dir), "WORKERS": "1", "API_KEYS": "lab-key-1,other.key"}, tmp_path / "log"
    )
    try:
        running.wait_ready()
        # 40 MB announced, none sent: the answer comes from the head alone.
        status, headers, body = exchange(
            running.port,
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 40000000\r\n\r\n",
        )
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
        assert headers["WWW-Authenticate"].startswith("Bearer")
        wrong = requests.post(
            f"{running.url}/invocations",
            data=b"x",
            headers={"X-API-Key": "LAB-KEY-1", "Content-Type": "image/jpeg"},
            timeout=10,
        )
        assert wrong.status_code == 401
        dog = photo_bytes("dog.jpg")
        for headers in ({"X-API-Key": "lab-key-1"}, {"Authorization": "Bearer other.key"}):
            answer = requests.post(
                f"{running.url}/invocations", data=dog, headers={**headers, "Content-Type": "image/jpeg"}, timeout=60
            )
            assert answer.status_code == 200 and answer.json()["stat"]["dog"] == 1
        assert requests.get(f"{running.url}/ping", timeout=5).status_code == 200  # health checks need no key
    finally:
        running.stop()
