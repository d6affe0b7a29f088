"""The service as it runs in production: gunicorn with gunicorn.conf.py behind the nginx
front, under their supervisor (app/serve/supervisor.py), on a free port."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60  # above gunicorn's graceful_timeout of 30 s
LOG_TAIL_LINES = 40
# The service's own settings: a value left in the caller's environment would make the
# "default settings" server something else.
SERVICE_VARIABLES = (
    "BACKEND",
    "DEVICE",
    "ENGINE_THREADS",
    "PIXEL_BUDGET_MEGAPIXELS",
    "REQUEST_DEADLINE_S",
    "LIBDARKNET_PATH",
    "LOG_LEVEL",
    "MODEL_DIR",
    "PORT",
    "PRECISION",
    "SAGEMAKER_BIND_TO_PORT",
    "THREADS",
    "WORKERS",
)


class ServerError(RuntimeError):
    """gunicorn exited or never answered /ping; the message carries its log's tail."""


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def workers(self) -> int:
        return len(gunicorn_workers(self.pid))

    def engine(self) -> str:
        model = requests.get(f"{self.url}/model", timeout=10).json()
        return f"{model['engine']} {model['precision']} on {model['device']}"


@contextmanager
def gunicorn(model_dir: Path, settings: dict[str, str]) -> Iterator[Server]:
    """A server on `model_dir`; `settings` are environment variables on top of the
    service's defaults. Stopped (SIGTERM, then wait) however the block ends."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    # Minutes-long queues of big photos are measured, not refused at the default deadline
    # (unless `settings` say otherwise: theirs win).
    env.update(
        MODEL_DIR=str(model_dir),
        PORT=str(port),
        REQUEST_DEADLINE_S="600",
        LOG_LEVEL="WARNING",
    )
    env.update(settings)
    # A file, not a pipe: a pipe nobody reads blocks gunicorn once it is full.
    with tempfile.NamedTemporaryFile("w", prefix="bench-gunicorn-", suffix=".log") as log:
        process = subprocess.Popen(
            # The interpreter running the benchmark, so the same packages (and its gunicorn).
            [sys.executable, "-m", "app.serve.supervisor"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Server(f"http://127.0.0.1:{port}", process.pid)
        try:
            _wait_ready(server, process, Path(log.name))
            yield server
        finally:
            _stop(process)


def gunicorn_workers(service_pid: int) -> list[int]:
    """gunicorn's workers: the children of its master, which is the service's process
    itself (gunicorn started alone) or the supervisor's child of that name."""
    master = service_pid
    if _command(service_pid) != "gunicorn":
        master = next((pid for pid in _children(service_pid) if _command(pid) == "gunicorn"), service_pid)
    return [pid for pid in _children(master) if _command(pid) == "gunicorn"]


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # gone meanwhile
        return []


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # gone meanwhile
        return ""


def free_port() -> int:
    """A free port below the kernel's ephemeral range: a port the kernel hands out (bind
    to 0) may be taken next as the source port of one of the many connections the
    tests open, and the service would then refuse to start on it."""
    try:
        lowest_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        lowest_ephemeral = 32768
    while True:
        port = random.randrange(10_000, max(lowest_ephemeral, 10_001))  # noqa: S311 - not a secret
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))  # noqa: S104 - where the service will listen
            except OSError:
                continue
            return port


def _wait_ready(server: Server, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"gunicorn exited with {process.returncode}:\n{_tail(log)}")
        try:
            if requests.get(f"{server.url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet
        time.sleep(0.2)
    raise ServerError(f"gunicorn did not answer /ping within {READY_TIMEOUT_S} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)  # the whole group: master and workers
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])


class SourceAdapter(HTTPAdapter):
    """Connections from a given local (loopback) address: another client, to the front,
    whose limits are per address."""

    def __init__(self, source: str):
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(source: str) -> requests.Session:
    """A session whose connections come from `source` (127.0.0.2, ...)."""
    session = requests.Session()
    session.mount("http://", SourceAdapter(source))
    return session
