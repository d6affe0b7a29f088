"""Helpers the tests share: the sample photos, and the service started as a user starts it."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from bench.server import free_port  # below the ephemeral range: one definition for tests and benchmarks

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
DEMO_MODEL = ROOT / "aimodel"
# What gunicorn's master, run.sh's model step and `import app` must not load.
HEAVY_MODULES = ("flask", "werkzeug", "cv2", "PIL", "onnxruntime", "onnx", "prometheus_client", "boto3")

# The running test's tier (conftest.py sets it): the guards below hold each tier to its promise.
TIER: str | None = None


def starts_processes(what: str) -> None:
    """Called where a test starts a real service, browser or container: only e2e may."""
    if TIER not in (None, "e2e"):
        raise AssertionError(f"a {TIER} test starts {what}: mark it @pytest.mark.e2e")


def under_ci() -> bool:
    """CI=true, as GitHub Actions, GitLab CI and most others set it."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_tool(found: bool, what: str, package: str) -> None:
    """A tool the suite needs (nginx, Chromium, a container engine, Debian's darknet, Label
    Studio's venv): where it is missing, a skip on a developer's machine, with the Debian
    package to install; under CI a failure, where a skip would hide tests that never ran."""
    if found:
        return
    reason = f"{what}: apt-get install {package}"
    if under_ci():
        pytest.fail(f"{reason} (CI=true: a tool the suite needs is missing)", pytrace=False)
    pytest.skip(reason)


def needs_tool(found: bool, what: str, package: str) -> pytest.MarkDecorator:
    """require_tool as a mark, for pytestmark and decorators: checked before the test's
    fixtures start anything (conftest.py)."""
    return pytest.mark.needs_tool(found, what, package)


def _unit_tests_open_no_model_file(event: str, args: tuple) -> None:
    # An audit hook: every open() of a file, whoever opens it (numpy, cv2's Python side,
    # shutil.copy), is seen here.
    if TIER == "unit" and event == "open" and isinstance(args[0], str | Path):
        path = Path(args[0])
        if path.suffix in (".weights", ".onnx") and DEMO_MODEL in Path(os.path.abspath(path)).parents:
            raise AssertionError(f"a unit test opens {path}: it needs the model_dir fixture (integration)")


sys.addaudithook(_unit_tests_open_no_model_file)

# Every way Python starts a process, as audit events: a fast-tier test that starts one,
# by a helper or by hand (subprocess.run, os.fork, a library's own), fails here.
PROCESS_EVENTS = ("subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system", "os.exec")


def _fast_tiers_start_no_process(event: str, args: tuple) -> None:
    if event in PROCESS_EVENTS and TIER in ("unit", "integration"):
        what = args[1] if event == "subprocess.Popen" else args[:1]
        raise AssertionError(f"a {TIER} test starts a process ({event} {what!r}): mark it @pytest.mark.e2e")


sys.addaudithook(_fast_tiers_start_no_process)


def photo_path(name: str) -> Path:
    return DATA / name


def photo_bytes(name: str) -> bytes:
    return photo_path(name).read_bytes()


def photo_rgb(name: str) -> np.ndarray:
    with Image.open(photo_path(name)) as image:
        return np.asarray(image.convert("RGB"))


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    """A picture made in a test, as the bytes of a file of that format."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def copy_model(source: Path, target: Path) -> Path:
    """The model in `source` in a directory of a test's own, for tests that change or add
    files next to it: .cfg and .names copied, the weights linked (35 MB, never changed)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("yolov3-tiny.cfg", "coco.names"):
        shutil.copy(source / name, target / name)
    (target / "yolov3-tiny.weights").symlink_to(source / "yolov3-tiny.weights")
    return target


def refusal(service: RunningService) -> str:
    """A start that must be refused: the one `cannot start:` line it printed."""
    try:
        assert service.process.wait(60) != 0
    finally:
        service.stop()
    errors = [line for line in service.output().splitlines() if line.startswith("cannot start:")]
    assert len(errors) == 1, service.output()
    return errors[0]


def wait_until(condition, timeout: float = 5.0) -> None:
    """Poll instead of sleeping a guessed time: as fast as the machine allows."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def photos_held(url: str) -> float:
    """Photos the workers hold, queued or at work (/metrics' gauges): what a test waits
    for before it stops or kills something under load."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    gauges = ("detector_photos_queued", "detector_photos_at_work")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(gauges))


def told_to_stop(url: str) -> bool:
    """The stop has arrived: /ping answers 503, or nothing listens any more."""
    try:
        return requests.get(f"{url}/ping", timeout=2).status_code != 200
    except (requests.ConnectionError, requests.Timeout):
        return True


def post_photo(url: str, photo: bytes, timeout: float = 60, content_type: str = "image/jpeg", **params):
    """A photo as a raw body to /invocations, as SageMaker's clients send it; parameters in the query."""
    return requests.post(
        f"{url}/invocations", data=photo, params=params, headers={"Content-Type": content_type}, timeout=timeout
    )


class RunningService:
    """./run.sh started as a user starts it, on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path, command: list[str] | None = None, port: int = 0):
        starts_processes("the service")
        self.port = port or free_port()
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
            # nginx listens before a worker does: a /ping may wait on a worker still loading.
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        raise AssertionError("the service did not answer /ping in time")

    def post_photo(self, name: str, timeout: float = 60, **params) -> requests.Response:
        """A sample photo as raw JPEG to /invocations, parameters in the query."""
        return post_photo(self.url, photo_bytes(name), timeout=timeout, **params)

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


@contextlib.contextmanager
def started(env: dict[str, str], log_path: Path, **options):
    """A RunningService ready to serve, stopped however the block ends."""
    running = RunningService(env, log_path, **options)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def worker_pids(service_pid: int) -> set[int]:
    """gunicorn's workers, under the service's supervisor (app/serve/supervisor.py)."""
    from bench.server import gunicorn_workers

    return set(gunicorn_workers(service_pid))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


class MotoServer:
    """moto's S3-compatible server on 127.0.0.1, in a process of its own."""

    def __init__(self, extra_env: dict[str, str] | None = None):
        starts_processes("an S3 server")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env={**os.environ, **(extra_env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/moto-api/", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError("moto server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class CuttingProxy:
    """A TCP proxy that forwards to `target_port` and, while `cut_after` is set,
    drops any connection once that many bytes came back: a server that dies mid-transfer."""

    def __init__(self, target_port: int, cut_after: int | None):
        self.cut_after = cut_after
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.cut_after), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                if limit is not None and sent + len(data) > limit:
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def run_count(*args: str, model_dir, status: int = 0) -> subprocess.CompletedProcess:
    """`python -m app count ARGS` as a user runs it, output piped, on the model in model_dir;
    its exit status must be `status`, and nothing it says a traceback."""
    starts_processes("python -m app count")
    result = subprocess.run(
        [sys.executable, "-m", "app", "count", *args],
        cwd=ROOT,
        env={"MODEL_DIR": str(model_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    return result


def big_photo(width: int = 3400, height: int = 2600) -> bytes:
    """A camera-sized JPEG (a sample photo scaled up): tiled, a few seconds of engine time."""
    import io

    with Image.open(photo_path("dog.jpg")) as image:
        out = io.BytesIO()
        image.convert("RGB").resize((width, height)).save(out, "JPEG", quality=90)
    return out.getvalue()
