"""Whatever a phone or a broken client sends, over real HTTP to real gunicorn: a 4xx
JSON error for what is not a usable photo, a normal answer for every odd but valid
photo, and never a worker lost."""

import base64
import io
import json
import socket
import struct
import zlib

import pytest
import requests
from PIL import Image
from support import RunningService, encoded, photo_bytes, worker_pids

DOG = photo_bytes("dog.jpg")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height and holds no pixels: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def raw(data: bytes, content_type: str = "image/jpeg", **params) -> dict:
    return {"data": data, "headers": {"Content-Type": content_type}, "params": params}


BAD_REQUESTS = {
    "empty raw body": (raw(b""), 400, "invalid_image"),
    "empty JSON body": (raw(b"", "application/json"), 400, "invalid_json"),
    "invalid JSON": (raw(b'{"image": ', "application/json"), 400, "invalid_json"),
    "JSON without image": ({"json": {"filename": "a.jpg"}}, 400, "missing_image"),
    "image not a string": ({"json": {"image": ["abc"]}}, 400, "invalid_base64"),
    "invalid base64": ({"json": {"image": "%%%not-base64%%%"}}, 400, "invalid_base64"),
    "base64 of a text file": ({"json": {"image": base64.b64encode(b"hello\n" * 50).decode()}}, 400, "invalid_image"),
    "truncated JPEG": (raw(DOG[: len(DOG) // 3]), 400, "damaged_image"),
    "zero-byte file": ({"files": {"image": ("empty.jpg", b"", "image/jpeg")}}, 400, "invalid_image"),
    "decompression bomb": (raw(png_header_only(30000, 30000), "image/png"), 413, "image_too_large"),
    "multipart without image": ({"files": {"photo": ("d.jpg", DOG, "image/jpeg")}}, 400, "missing_image"),
    "wrong content type": (raw(DOG, "text/plain"), 415, "unsupported_media_type"),
    "threshold -1": (raw(DOG, threshold="-1"), 400, "invalid_parameter"),
    "threshold 2": (raw(DOG, threshold="2"), 400, "invalid_parameter"),
    "threshold abc": (raw(DOG, threshold="abc"), 400, "invalid_parameter"),
}

VALID_ODD_PHOTOS = {
    "PNG with alpha": (encoded(Image.open(io.BytesIO(DOG)).convert("RGBA"), "PNG"), "image/png"),
    "grey JPEG": (encoded(Image.open(io.BytesIO(DOG)).convert("L"), "JPEG"), "image/jpeg"),
    "16-bit PNG": (encoded(Image.open(io.BytesIO(DOG)).convert("L").convert("I;16"), "PNG"), "image/png"),
    "CMYK JPEG": (encoded(Image.open(io.BytesIO(DOG)).convert("CMYK"), "JPEG"), "image/jpeg"),
    "WebP": (encoded(Image.open(io.BytesIO(DOG)), "WEBP", quality=90), "image/webp"),
    "multi-page TIFF": (
        encoded(Image.open(io.BytesIO(DOG)), "TIFF", save_all=True, append_images=[Image.new("RGB", (64, 64))]),
        "image/tiff",
    ),
    "1x1 pixel": (encoded(Image.new("RGB", (1, 1), (90, 60, 30)), "PNG"), "image/png"),
}


@pytest.fixture(scope="module")
def workers_before(live_server):
    return worker_pids(live_server.process.pid)


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_input_is_a_4xx_json_error(live_server, workers_before, case):
    request, status, code = BAD_REQUESTS[case]
    response = requests.post(f"{live_server.url}/invocations", timeout=30, **request)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("case", VALID_ODD_PHOTOS)
def test_odd_but_valid_photos_are_served(live_server, case):
    data, content_type = VALID_ODD_PHOTOS[case]
    response = requests.post(
        f"{live_server.url}/invocations", data=data, headers={"Content-Type": content_type}, timeout=30
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["stat"]) == 80
    size = Image.open(io.BytesIO(base64.b64decode(body["img"]))).size
    assert size == ((1, 1) if case == "1x1 pixel" else (768, 576))
    if case in ("PNG with alpha", "WebP", "multi-page TIFF", "CMYK JPEG"):
        assert body["stat"]["dog"] >= 1


def test_no_worker_was_lost(live_server, workers_before):
    # Runs after the cases above (pytest keeps file order).
    assert worker_pids(live_server.process.pid) == workers_before
    assert requests.get(f"{live_server.url}/ping", timeout=5).status_code == 200


@pytest.mark.e2e
def test_oversized_body_is_refused_before_it_is_read(tmp_path):
    service = RunningService({"MAX_UPLOAD_MB": "1", "WORKERS": "1"}, tmp_path / "service.log")
    try:
        service.wait_ready()
        # Announce 500 MB, send 64 kB: the 413 must come without waiting for the rest.
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: 500000000\r\n\r\n" + b"\xff" * 65536
            )
            answer = _read_response(sock)
        assert answer.startswith("HTTP/1.1 413")
        assert '"payload_too_large"' in answer

        def chunks():  # no Content-Length at all: the limit holds while streaming
            for _ in range(40):
                yield b"\0" * 65536

        response = requests.post(
            f"{service.url}/invocations", data=chunks(), headers={"Content-Type": "image/jpeg"}, timeout=30
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
    finally:
        service.stop()


def _read_response(sock: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return (head + b"\r\n\r\n" + body).decode(errors="replace")


ECHO_BAIT = {
    # 45 MB of `"x",`: 11 million values, refused from the raw bytes before parsing.
    "a 45 MB classes list": lambda: b'{"image": "", "classes": [' + b'"x",' * 11_250_000 + b'"x"]}',
    # 12,000 unknown names of 1 KB each: parsed, and named five at a time, cut short.
    "12 MB of unknown class names": lambda: json.dumps(
        {"image": base64.b64encode(DOG).decode(), "classes": [f"{i}{'y' * 1000}" for i in range(12_000)]}
    ).encode(),
    "a threshold of a million digits": lambda: json.dumps(
        {"image": base64.b64encode(DOG).decode(), "threshold": "9" * 1_000_000}
    ).encode(),
}


@pytest.mark.e2e
def test_errors_never_echo_what_was_sent_and_json_is_parsed_within_bounds(model_dir, tmp_path):
    """A 45 MB `classes` list came back as a 400 of 117 MB, the worker at 3 GB."""
    from bench.hostile import worker_memory_mb

    service = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1"}, tmp_path / "service.log")
    try:
        service.wait_ready()
        _, resting = worker_memory_mb(service.process.pid)
        for name, make in ECHO_BAIT.items():
            response = requests.post(
                f"{service.url}/invocations",
                data=make(),
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            assert response.status_code == 400, name
            assert len(response.content) < 4096, f"{name}: an error of {len(response.content)} bytes"
            assert response.json()["error"]["code"] in ("invalid_json", "invalid_parameter")
        peak, _ = worker_memory_mb(service.process.pid)
    finally:
        service.stop()
    assert peak < resting + 800, f"worker peak RSS {peak:.0f} MB, {resting:.0f} MB at rest"
