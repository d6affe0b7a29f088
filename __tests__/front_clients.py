"""Raw clients for the tests of the nginx front: what a hostile client sends (a head
with no body, a body that never ends, headers no library would write), from a loopback
address of its own (127.0.0.2, ...; the limits are per address), and what a normal
client measures meanwhile."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import time
from pathlib import Path

import requests


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def read_answer(sock: socket.socket, timeout: float = 10) -> tuple[int, dict, str]:
    """The answer to its end (nginx closes after an error): (status, headers, body)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if length and len(body) >= int(length[0].split(b":")[1]):
                break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body.decode("latin-1")


def exchange(port: int, raw: bytes, source: str = "127.0.0.1", timeout: float = 10) -> tuple[int, dict, str]:
    with connect(port, source, timeout) as sock:
        sock.sendall(raw)
        return read_answer(sock, timeout)


def error_code(body: str) -> str:
    return json.loads(body)["error"]["code"]


def head(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", *(f"{name}: {value}" for name, value in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def timed(call) -> tuple[float, object]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def ping_seconds(url: str, times: int = 5, timeout: float = 10) -> list[float]:
    """/ping's time, `times` in a row (a failed one counts as the timeout)."""
    seconds = []
    for _ in range(times):
        started = time.monotonic()
        try:
            ok = requests.get(f"{url}/ping", timeout=timeout).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            ok = False
        seconds.append(time.monotonic() - started if ok else timeout)
    return seconds


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def run_dir(supervisor_pid: int) -> Path:
    """The service's private run directory (app/serve/supervisor.py), by its supervisor's pid."""
    import tempfile

    (found,) = Path(tempfile.gettempdir()).glob(f"detector-run-{supervisor_pid}-*")
    return found


def nginx_processes() -> list[int]:
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            if status.read_text().startswith("Name:\tnginx\n"):
                pids.append(int(status.parent.name))
    return pids


def temp_bytes(folder: Path) -> int:
    """Bytes of the temp files nginx holds open under `folder`: it unlinks a body's temp
    file as it opens it, so only its descriptors still show them."""
    total = 0
    for pid in nginx_processes():
        for fd in Path(f"/proc/{pid}/fd").glob("*") if Path(f"/proc/{pid}/fd").exists() else []:
            with contextlib.suppress(OSError):
                if os.readlink(fd).startswith(str(folder)):
                    total += fd.stat().st_size
    return total


def stalled_upload(port: int, source: str, headers: dict[str, str] | None = None) -> socket.socket:
    """A POST whose head and first 100 KB are in and whose body never ends: a parked upload."""
    sock = connect(port, source)
    sock.sendall(
        head("POST", "/invocations", {"Content-Type": "image/jpeg", "Content-Length": "5000000", **(headers or {})})
        + b"\xff" * 100_000
    )
    return sock


def refused_at_once(sock: socket.socket) -> bool:
    """nginx answered 429 straight away (an upload past a limit), rather than waiting for its body."""
    sock.settimeout(0.2)
    try:
        return sock.recv(12) == b"HTTP/1.1 429"
    except TimeoutError:
        return False
