"""Helpers the tests share: the sample photos, and the service started as a user starts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
DEMO_MODEL = ROOT / "aimodel"


def photo_path(name: str) -> Path:
    return DATA / name


def photo_bytes(name: str) -> bytes:
    return photo_path(name).read_bytes()


def photo_rgb(name: str) -> np.ndarray:
    with Image.open(photo_path(name)) as image:
        return np.asarray(image.convert("RGB"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningService:
    """./run.sh started as a user starts it, on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path, command: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environment = {**os.environ, "PORT": str(self.port), **env}
        # Logs go to a file: a pipe nobody drains would block the server when full.
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                command or [str(ROOT / "run.sh")],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited with {self.process.returncode}:\n{self.output()}")
            try:
                if requests.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError("the service did not answer /ping in time")

    def stop(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def worker_pids(master_pid: int) -> set[int]:
    """gunicorn's workers: the children of the master process."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return {int(pid) for pid in children}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")
