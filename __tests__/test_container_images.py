"""The images people deploy, built by scripts/build_image.sh and run as SageMaker and
`docker run` start them: the CPU image serves and counts, the GPU image carries a CUDA
darknet that, without a GPU, still counts on the CPU or refuses in one line.

Run with docker (where its daemon answers) or podman; skipped, with the reason, where
neither can run a container (a failure under CI=true). Builds reuse the engine's layer
cache: seconds when only the service's code changed, minutes for a first build (the GPU
image's CUDA toolkit and darknet's CUDA build, once).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from reaper import label_args
from support import DATA, ROOT, free_port, post_photo, require_tool, told_to_stop, wait_until

pytestmark = pytest.mark.e2e

DOG = {"bicycle": 1, "car": 1, "truck": 1, "dog": 1}  # dog.jpg by the demo model
CPU_IMAGE_MAX_BYTES = 1.5e9
SERVICE_UID = "10001"  # the Dockerfile's user
_names = itertools.count()
PYTHON = (".venv/bin/python", "-c")  # the service's interpreter, in the image's /srv/app

# Run inside an image: the binding on the image's libdarknet.so, dog.jpg through the
# darknet engine as the service builds it (DEVICE=auto), and what the library is.
PROBE = """
import json, logging, sys
from pathlib import Path
import numpy as np
from PIL import Image
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
from app.inference.detector import Detector
from app.inference.engines import create_engine
from app.model.files import load_model_description
from app.vision.postprocess import count_by_class
from darknet import Network, load_library

model = load_model_description(Path("/opt/ml/model"))
rgb = np.asarray(Image.open("/photos/dog.jpg").convert("RGB"))
library = load_library()
with Network(library, model.files.cfg, model.files.weights, classes=len(model.class_names)) as network:
    raw = network.predict(rgb, 0.25)
engine = create_engine("darknet", model, threads=2, device="auto")
counts = count_by_class(Detector(engine, model).detect(rgb), model.class_names)
print(json.dumps({
    "flavour": library.flavour, "cuda": library.has_gpu, "build": engine.build, "device": engine.device,
    "boxes": raw.boxes.tolist(), "scores": raw.scores.max(axis=1).tolist(),
    "counts": {name: n for name, n in counts.items() if n},
}))
"""


def _engine() -> list[str]:
    """The container engine as build_image.sh picks it: docker where its daemon answers,
    else podman (with runc where installed)."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return ["docker"]
    found = shutil.which("podman") is not None
    require_tool(found, "no container engine: neither a docker daemon nor podman here", "podman runc")
    return ["podman", "--runtime", "runc"] if shutil.which("runc") else ["podman"]


@pytest.fixture(scope="session")
def engine() -> list[str]:
    return _engine()


def _build(variant: str, tmp_path_factory) -> tuple[str, str]:
    engine = _engine()
    log = tmp_path_factory.mktemp(f"image-{variant}") / "build.log"
    with log.open("w") as out:
        done = subprocess.run(
            [str(ROOT / "scripts" / "build_image.sh"), variant], stdout=out, stderr=subprocess.STDOUT, timeout=3600
        )
    said = log.read_text(errors="replace")
    if done.returncode != 0 and "cannot start a container" in said:
        last = said.strip().splitlines()[-1]
        require_tool(False, f"{' '.join(engine)} cannot run a container here: {last}", "podman runc")
    assert done.returncode == 0, said[-4000:]
    return f"darknet-service:{variant}", said


@pytest.fixture(scope="session")
def cpu_image(tmp_path_factory):
    return _build("cpu", tmp_path_factory)


@pytest.fixture(scope="session")
def gpu_image(tmp_path_factory):
    return _build("gpu", tmp_path_factory)


@pytest.fixture(scope="session")
def mounted_model(tmp_path_factory, model_dir: Path) -> Path:
    """The demo model with `dog` renamed, so an answer shows which model served it (the
    image may have the demo model built in). Its ONNX export comes along: it is keyed by
    the cfg and weights, which are the same."""
    directory = tmp_path_factory.mktemp("mounted-model")
    for path in model_dir.iterdir():
        if path.suffix in (".cfg", ".weights", ".onnx"):
            shutil.copyfile(path, directory / path.name)
    names = (model_dir / "coco.names").read_text().splitlines()
    (directory / "coco.names").write_text("\n".join("mounted-dog" if n == "dog" else n for n in names) + "\n")
    for path in directory.iterdir():
        path.chmod(0o644)  # readable by the image's user, whoever owns the copy
    directory.chmod(0o755)
    return directory


MOUNTED_DOG = {**{k: v for k, v in DOG.items() if k != "dog"}, "mounted-dog": 1}


class Container:
    """One container of an image, on a free loopback port, removed when done."""

    def __init__(self, engine: list[str], image: str, *args: str, command: tuple[str, ...] = ("serve",)):
        self.engine, self.port = engine, free_port()
        self.name = f"darknet-service-test-{os.getpid()}-{next(_names)}"
        self.url = f"http://127.0.0.1:{self.port}"
        subprocess.run(
            [
                *engine,
                "run",
                "--detach",
                "--name",
                self.name,
                *label_args(),  # removed by the run's reaper, however the run ends
                "-p",
                f"127.0.0.1:{self.port}:8080",
                *args,
                image,
                *command,
            ],
            check=True,
            capture_output=True,
        )

    def running(self) -> bool:
        state = self._inspect("{{.State.Running}}")
        return state == "true"

    def exit_code(self) -> int:
        return int(self._inspect("{{.State.ExitCode}}"))

    def logs(self) -> str:
        done = subprocess.run([*self.engine, "logs", self.name], capture_output=True, text=True)
        return done.stdout + done.stderr

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"the container exited with {self.exit_code()}:\n{self.logs()}")
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                if requests.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"no /ping 200 in {timeout} s:\n{self.logs()}")

    def count(self, photo: bytes, **params) -> requests.Response:
        return post_photo(self.url, photo, timeout=120, return_image="false", **params)

    def stopping(self) -> bool:
        return told_to_stop(self.url)

    def exec(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.engine, "exec", self.name, *command], capture_output=True, text=True)

    def wait_exit(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.running():
            assert time.monotonic() < deadline, f"still running after {timeout} s:\n{self.logs()}"
            time.sleep(0.2)
        return self.exit_code()

    def remove(self) -> None:
        subprocess.run([*self.engine, "rm", "--force", self.name], capture_output=True)

    def _inspect(self, template: str) -> str:
        done = subprocess.run(
            [*self.engine, "inspect", "--format", template, self.name], capture_output=True, text=True
        )
        return done.stdout.strip()


@contextlib.contextmanager
def container(engine, image, *args, command=("serve",)):
    running = Container(engine, image, *args, command=command)
    try:
        yield running
    finally:
        running.remove()


def counted(answer: requests.Response) -> dict[str, int]:
    assert answer.status_code == 200, answer.text
    return {name: n for name, n in answer.json()["stat"].items() if n}


def run_probe(engine, image: str, model: Path) -> dict:
    mounts = ["-v", f"{model}:/opt/ml/model:ro", "-v", f"{DATA}:/photos:ro"]
    done = subprocess.run(
        [*engine, "run", *label_args(), "--rm", *mounts, image, *PYTHON, PROBE],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    probe["log"] = done.stderr
    return probe


# --- the CPU image ----------------------------------------------------------------------


def test_the_cpu_image_builds_says_which_darknet_it_compiled_and_stays_small(cpu_image, engine):
    image, said = cpu_image
    built, run_it = said.strip().splitlines()[-2:]
    assert "darknet: " in built, said[-2000:]  # which darknet, which commit
    # The line to run it, with the engine that built it (a podman image is not in docker's store).
    assert run_it.startswith(f"build_image: run it: {' '.join(engine)} run --rm -p 8080:8080 darknet-service:cpu")
    size = int(
        subprocess.run(
            [*engine, "image", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True, check=True
        ).stdout
    )
    assert size < CPU_IMAGE_MAX_BYTES, f"{size / 1e9:.2f} GB"


def test_serve_counts_dog_with_the_mounted_model_as_a_non_root_user(cpu_image, engine, mounted_model):
    with container(engine, cpu_image[0], "-v", f"{mounted_model}:/opt/ml/model:ro") as service:
        service.wait_ready()
        assert counted(service.count((DATA / "dog.jpg").read_bytes())) == MOUNTED_DOG
        assert "mounted-dog" in requests.get(f"{service.url}/model", timeout=10).json()["classes"]
        assert service.exec("id", "-u").stdout.strip() == SERVICE_UID
        pid1 = service.exec("cat", "/proc/1/status").stdout
        assert f"Uid:\t{SERVICE_UID}\t{SERVICE_UID}\t" in pid1  # PID 1 too: real and effective


def test_a_read_only_container_without_network_still_serves(cpu_image, engine, mounted_model):
    """--read-only with a tmpfs /tmp: the service writes only there (nginx's files, the
    metrics, the ONNX export of a read-only model). No network: nothing is fetched at start."""
    args = ("--read-only", "--tmpfs", "/tmp", "--network", "none")  # noqa: S108 - the container's /tmp
    mounts = ("-v", f"{mounted_model}:/opt/ml/model:ro", "-v", f"{DATA}:/photos:ro")
    with container(engine, cpu_image[0], *args, *mounts) as service:
        client = (
            "import time, urllib.request\n"
            "for _ in range(900):\n"
            "    try:\n"
            "        urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=2); break\n"
            "    except OSError: time.sleep(0.2)\n"
            "photo = open('/photos/dog.jpg', 'rb').read()\n"
            "request = urllib.request.Request('http://127.0.0.1:8080/invocations?return_image=false', data=photo,"
            " headers={'Content-Type': 'image/jpeg'})\n"
            "print(urllib.request.urlopen(request, timeout=120).read().decode())\n"
        )
        done = service.exec(*PYTHON, client)
        assert done.returncode == 0, done.stderr + service.logs()
        stat = json.loads(done.stdout)["stat"]
        assert {name: n for name, n in stat.items() if n} == MOUNTED_DOG
        assert service.running(), service.logs()


def _slow_photo() -> bytes:
    """A 2400x1800 photo counted with tiling=on: some 35 tiles, a second or more of work
    (2 cores), so two of them are surely in flight when the container is told to stop,
    and done well within gunicorn's 30 s even on a busy machine."""
    rng = np.random.default_rng(23)
    with Image.open(DATA / "dog.jpg") as dog:
        canvas = Image.fromarray(rng.integers(0, 255, (1800, 2400, 3), dtype=np.uint8))
        canvas.paste(dog.convert("RGB"), (800, 600))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=85)
    return out.getvalue()


def test_docker_stop_drains_the_photos_in_flight(cpu_image, engine, mounted_model):
    """`docker stop` is SIGTERM to PID 1, then a wait: the photos in flight are answered,
    photos that arrive meanwhile get the service's JSON 503 (or find the port closed),
    and the container exits 0."""
    with container(engine, cpu_image[0], "-v", f"{mounted_model}:/opt/ml/model:ro", "-e", "WORKERS=1") as service:
        service.wait_ready()
        photo = _slow_photo()

        def send(_):
            try:
                return service.count(photo, tiling="on")
            except requests.ConnectionError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=8) as pool:
            in_flight = [pool.submit(send, i) for i in range(2)]
            time.sleep(0.5)  # the uploads are in (loopback); the two take seconds
            stop = pool.submit(subprocess.run, [*engine, "stop", "--time", "60", service.name], capture_output=True)
            wait_until(service.stopping, timeout=30)  # the signal has arrived: /ping says so
            later = [pool.submit(send, i) for i in range(2)]
            answers = [future.result() for future in in_flight + later]
            stop.result()
        exit_code = service.wait_exit()
        logs = service.logs()
    for answer in answers[:2]:
        assert not isinstance(answer, Exception), f"{answer}\n{logs}"
        assert answer.status_code == 200, f"{answer.text}\n{logs}"
    for answer in answers[2:]:
        if isinstance(answer, Exception):
            assert "Connection refused" in str(answer), answer  # the port closed: no reset mid-request
        else:
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] in ("busy", "unavailable") and answer.headers["Retry-After"]
    assert exit_code == 0, logs


# --- the GPU image, on a machine without a GPU ---------------------------------------------


def test_the_gpu_image_carries_a_cuda_darknet_that_counts_like_the_cpu_build(gpu_image, cpu_image, engine, model_dir):
    """With gpu_index -1 the CUDA build runs on the CPU: the same boxes as the CPU image's
    build of the same source; under DEVICE=auto the engine says in one line why not the GPU."""
    gpu = run_probe(engine, gpu_image[0], model_dir)
    cpu = run_probe(engine, cpu_image[0], model_dir)
    assert gpu["cuda"] and not cpu["cuda"]
    assert "GPU=1" in gpu["build"] and "GPU=0" in cpu["build"]
    assert gpu["flavour"] == cpu["flavour"]
    assert gpu["counts"] == cpu["counts"] == DOG
    assert gpu["device"] == "cpu"
    np.testing.assert_allclose(np.array(gpu["boxes"]), np.array(cpu["boxes"]), atol=1e-3)
    np.testing.assert_allclose(np.array(gpu["scores"]), np.array(cpu["scores"]), atol=1e-3)
    warnings = [line for line in gpu["log"].splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "is a CUDA build but" in warnings[0], gpu["log"]


def test_the_gpu_image_without_a_gpu_serves_on_the_cpu_and_says_why(gpu_image, engine, mounted_model):
    with container(engine, gpu_image[0], "-v", f"{mounted_model}:/opt/ml/model:ro") as service:
        service.wait_ready()
        assert counted(service.count((DATA / "dog.jpg").read_bytes())) == MOUNTED_DOG
        assert requests.get(f"{service.url}/model", timeout=10).json()["device"] == "cpu"
        logs = service.logs()
    said = [line for line in logs.splitlines() if "cannot use a GPU" in line]
    assert len(said) == 1 and "is a CUDA build but" in said[0], logs


def test_the_gpu_image_under_device_cuda_refuses_to_start_in_one_line(gpu_image, engine, mounted_model):
    with container(engine, gpu_image[0], "-v", f"{mounted_model}:/opt/ml/model:ro", "-e", "DEVICE=cuda") as service:
        assert service.wait_exit() != 0
        logs = service.logs()
    refusals = [line for line in logs.splitlines() if "cannot start:" in line]
    assert len(refusals) == 1 and "CUDA build but" in refusals[0], logs
    assert "Traceback" not in logs
