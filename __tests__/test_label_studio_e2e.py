"""The labelling loop against a real Label Studio (from PyPI, in a venv of its own that
scripts/label_studio_venv.sh makes under ~/.cache: about 2.5 min the first time, then
nothing), as a lab runs it: a project with a rectangle config, photos imported, the
service connected as its ML backend, predictions retrieved, accepted as annotations,
exported in YOLO and evaluated with `python -m app evaluate`."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
from support import ROOT, RunningService, big_photo, free_port, photo_bytes, require_tool, started, wait_until

pytestmark = pytest.mark.e2e

PHOTOS = ("dog.jpg", "person.jpg", "horses.jpg")
# Labels in an order of the lab's own (Label Studio exports them alphabetically, the
# model's .names has another order), with one the model does not know.
CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    '<Label value="person"/><Label value="dog"/><Label value="horse"/><Label value="bicycle"/>'
    '<Label value="truck"/><Label value="Unicorn"/></RectangleLabels></View>'
)
USER, PASSWORD = "lab@example.org", "a-lab-password-1"


class LabelStudio:
    """`label-studio start` on 127.0.0.1 with its data in a temporary folder (SQLite)."""

    def __init__(self, python: str, data_dir, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            # The ML backend and its webhook are on loopback, which Label Studio refuses by default.
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
        }
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [str(Path(python).parent / "label-studio"), "start", "--no-browser", *self.options(data_dir)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.session = requests.Session()

    def options(self, data_dir) -> list[str]:
        where = ["--data-dir", str(data_dir), "--internal-host", "127.0.0.1", "--port", str(self.port)]
        return [*where, "--username", USER, "--password", PASSWORD]

    def wait_ready(self, timeout: float = 300) -> None:
        def up() -> bool:
            assert self.process.poll() is None, f"Label Studio exited:\n{self.log_path.read_text()[-3000:]}"
            try:
                return requests.get(f"{self.url}/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout)

    def personal_access_token(self) -> str:
        """Made as a user makes it: signed in, Account & Settings, Personal Access Token."""
        browser = requests.Session()
        browser.get(f"{self.url}/user/login/", timeout=30)
        browser.post(
            f"{self.url}/user/login/",
            data={"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            headers={"Referer": f"{self.url}/user/login/"},
            timeout=30,
        )
        made = browser.post(
            f"{self.url}/api/token/",
            headers={"X-CSRFToken": browser.cookies["csrftoken"], "Referer": f"{self.url}/"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        return made.json()["token"]

    def use(self, token: str) -> None:
        access = requests.post(f"{self.url}/api/token/refresh/", json={"refresh": token}, timeout=30).json()["access"]
        self.session.headers["Authorization"] = f"Bearer {access}"

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.url}{path}", timeout=300, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def label_studio_python() -> str:
    made = subprocess.run(
        ["bash", str(ROOT / "scripts" / "label_studio_venv.sh")], capture_output=True, text=True, timeout=1200
    )
    said = " / ".join(made.stderr.strip().splitlines()[-5:])
    require_tool(made.returncode == 0, f"Label Studio's venv could not be made ({said})", "python3-venv")
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def label_studio(label_studio_python, tmp_path_factory):
    folder = tmp_path_factory.mktemp("label_studio")
    studio = LabelStudio(label_studio_python, folder / "data", folder / "label-studio.log")
    try:
        studio.wait_ready()
        yield studio
    finally:
        studio.stop()


@pytest.fixture(scope="module")
def token(label_studio) -> str:
    made = label_studio.personal_access_token()
    label_studio.use(made)
    return made


@pytest.fixture(scope="module")
def service(label_studio, token, model_dir, tmp_path_factory):
    with started(
        {"MODEL_DIR": str(model_dir), "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": token},
        tmp_path_factory.mktemp("service") / "service.log",
    ) as running:
        yield running


def retrieve_predictions(label_studio, project_id: int) -> list[dict]:
    """Data manager: select all, Actions > Retrieve Predictions; then the project's tasks."""
    done = label_studio.api(
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project_id},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    assert done.status_code == 200, done.text
    return label_studio.api("GET", "/api/tasks", params={"project": project_id, "fields": "all"}).json()["tasks"]


def test_a_lab_pre_labels_in_label_studio_exports_yolo_and_evaluates_the_export(
    label_studio, service, model_dir, tmp_path
):
    project = label_studio.api("POST", "/api/projects/", json={"title": "rotifer counts", "label_config": CONFIG})
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    files = {name: (name, photo_bytes(name), "image/jpeg") for name in PHOTOS}
    imported = label_studio.api("POST", f"/api/projects/{project_id}/import", files=files)
    assert imported.json()["task_count"] == len(PHOTOS), imported.text

    # Settings > Model > Connect model: Label Studio checks /health and /setup.
    label_studio.api(
        "POST", "/api/ml", json={"url": f"{service.url}/label-studio", "project": project_id, "title": "darknet"}
    )
    (backend,) = label_studio.api("GET", "/api/ml", params={"project": project_id}).json()
    model_version = requests.get(f"{service.url}/model", timeout=10).json()["files"]["yolov3-tiny.weights"][:12]
    assert (backend["readable_state"], backend["model_version"]) == ("Connected", model_version)

    started = time.monotonic()
    tasks = retrieve_predictions(label_studio, project_id)
    print(f"predictions for {len(PHOTOS)} photos retrieved in {time.monotonic() - started:.1f} s")
    assert len(tasks) == len(PHOTOS)
    wanted = {"person", "dog", "horse", "bicycle", "truck"}
    for task in tasks:
        (predicted,) = task["predictions"]
        assert predicted["model_version"] == model_version
        photo = next(name for name in PHOTOS if task["data"]["image"].endswith(name))
        stat = service.post_photo(photo, return_image="false").json()["stat"]
        labelled = [region["value"]["rectanglelabels"][0] for region in predicted["result"]]
        assert sorted(labelled) == sorted(name for name in wanted for _ in range(stat[name]))
        # The lab looks and accepts the pre-labels as they are.
        accepted = label_studio.api(
            "POST",
            f"/api/tasks/{task['id']}/annotations/",
            json={"result": predicted["result"], "was_cancelled": False},
        )
        assert accepted.status_code == 201, accepted.text
    assert "Unicorn" in service.output()  # the label the model has no class for, said in the log

    exported = label_studio.api("GET", f"/api/projects/{project_id}/export", params={"exportType": "YOLO_WITH_IMAGES"})
    assert exported.status_code == 200, exported.text[:500]
    zipfile.ZipFile(io.BytesIO(exported.content)).extractall(tmp_path / "export")
    assert (tmp_path / "export" / "classes.txt").read_text().split() == sorted(
        ["person", "dog", "horse", "bicycle", "truck", "Unicorn"]
    )

    result = subprocess.run(
        [sys.executable, "-m", "app", "evaluate", str(tmp_path / "export"), "--json", str(tmp_path / "eval.json")],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "MODEL_DIR": str(model_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "classes.txt" in result.stderr and "mapped" in result.stderr  # the alphabetical numbering, remapped
    classes = json.loads((tmp_path / "eval.json").read_text())["classes"]
    labelled = {name: numbers for name, numbers in classes.items() if numbers["labelled"]}
    assert set(labelled) <= wanted and "dog" in labelled
    for numbers in labelled.values():
        # The labels are the model's own boxes: every one found again, every count right.
        assert numbers["tp"] == numbers["labelled"] and numbers["fn"] == 0
        assert numbers["count_mae"] == 0
    assert not [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def test_select_all_and_retrieve_twice_labels_a_batch_too_big_for_one_request(label_studio, token, model_dir, tmp_path):
    # Big tiled photos and 2 s for a batch: the first retrieve has time for few of them.
    photos = {f"big-{number}.jpg": big_photo(3000 + 100 * number, 2400) for number in range(4)}
    project = label_studio.api("POST", "/api/projects/", json={"title": "a big batch", "label_config": CONFIG})
    project_id = project.json()["id"]
    files = {name: (name, photo, "image/jpeg") for name, photo in photos.items()}
    assert label_studio.api("POST", f"/api/projects/{project_id}/import", files=files).json()["task_count"] == 4
    env = {
        "MODEL_DIR": str(model_dir),
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": token,
        "LABEL_STUDIO_TIMEOUT_S": "2",
    }
    service = RunningService(env, tmp_path / "service.log")
    try:
        service.wait_ready()
        label_studio.api("POST", "/api/ml", json={"url": f"{service.url}/label-studio", "project": project_id})

        first = retrieve_predictions(label_studio, project_id)
        assert not all(task["predictions"] for task in first)  # the batch did not fit
        # Counted after the answer: the service's log says so, task by task.
        wait_until(
            lambda: service.output().count("counted after its batch") >= 4 - sum(1 for t in first if t["predictions"]),
            timeout=240,
        )
        second = retrieve_predictions(label_studio, project_id)
        assert all(task["predictions"] for task in second), [len(task["predictions"]) for task in second]
        assert all(task["predictions"][-1]["result"] for task in second)  # dogs on every photo
    finally:
        service.stop()
