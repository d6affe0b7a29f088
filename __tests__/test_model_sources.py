"""Where the model comes from: one decision (model_dir), one fetch (prepare_model)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import DEMO_MODEL, HEAVY_MODULES, ROOT, starts_processes

from app.model import sources
from app.model.files import ModelError, file_digest, load_model_description
from app.model.sources import choose_source, model_dir, prepare_model
from app.settings import Settings

MODEL_FILES = ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")


def copy_demo_model(uri: str, destination: Path) -> list[Path]:
    """A fetcher for the table, as a new source's module provides one: copies the demo model."""
    destination.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(DEMO_MODEL / name, destination / name)) for name in MODEL_FILES]


@pytest.fixture
def places(tmp_path):
    """An empty ./aimodel and a SageMaker directory that does not exist (yet)."""
    local = tmp_path / "aimodel"
    local.mkdir()
    return local, tmp_path / "opt-ml-model"


def test_model_dir_wins_over_a_model_in_aimodel_and_sagemaker(places):
    local, sagemaker = places
    (local / "mine.weights").write_bytes(b"w")
    sagemaker.mkdir()
    assert model_dir({"MODEL_DIR": "/elsewhere"}, local, sagemaker) == Path("/elsewhere")


def test_model_s3_uri_is_fetched_into_aimodel_s3_unless_model_dir_says_where(places):
    local, sagemaker = places
    (local / "mine.weights").write_bytes(b"w")  # never mixed with a fetched model
    assert model_dir({"MODEL_S3_URI": "s3://lab/m"}, local, sagemaker) == local / "s3"
    assert model_dir({"MODEL_S3_URI": "s3://lab/m", "MODEL_DIR": "/m"}, local, sagemaker) == Path("/m")


def test_with_no_model_anywhere_the_demo_goes_into_aimodel(places):
    # aimodel/ with weights, then /opt/ml/model: test_sagemaker.py
    local, sagemaker = places
    assert choose_source({}, local, sagemaker) == sources.ModelSource("demo:yolov3-tiny", local)


def test_deciding_fetches_nothing(tmp_path):
    local = tmp_path / "aimodel"
    assert model_dir({}, local, tmp_path / "no-sagemaker") == local  # where the demo would go
    assert Settings.from_env({"MODEL_S3_URI": "s3://no-such-bucket/m"}).model_dir == Path("aimodel/s3")
    assert not local.exists()


@pytest.mark.parametrize(
    "uri", ["https://models.example/rotifers/", "/srv/models", "file:///srv/models", "demo:yolov3-tiny"]
)
def test_a_scheme_with_no_source_is_one_line_naming_the_known_ones(uri):
    with pytest.raises(ModelError, match=r"^MODEL_S3_URI=\S+: not a scheme a model can be fetched from, known: s3$"):
        model_dir({"MODEL_S3_URI": uri})


def test_a_new_scheme_is_one_entry_in_the_table(places, monkeypatch, model_dir):
    local, sagemaker = places
    monkeypatch.setitem(sources.SOURCES, "https", f"{__name__}:copy_demo_model")
    directory = prepare_model({"MODEL_S3_URI": "https://models.example/rotifers/"}, local, sagemaker)
    assert directory == local / "s3"
    assert sorted(p.name for p in directory.iterdir()) == sorted(MODEL_FILES)


@pytest.mark.e2e
def test_the_demo_is_fetched_only_when_nothing_is_configured(places, monkeypatch):
    local, sagemaker = places
    monkeypatch.setitem(sources.SOURCES, "demo", f"{__name__}:copy_demo_model")
    assert prepare_model({}, local, sagemaker) == local
    assert (local / "yolov3-tiny.weights").is_file()
    (local / "yolov3-tiny.weights").unlink()
    sagemaker.mkdir()
    assert prepare_model({}, local, sagemaker) == sagemaker
    assert not (local / "yolov3-tiny.weights").exists()


@pytest.mark.e2e
def test_fetched_weights_must_match_model_sha256(places, monkeypatch):
    local, sagemaker = places
    monkeypatch.setitem(sources.SOURCES, "demo", f"{__name__}:copy_demo_model")
    with pytest.raises(ModelError, match="does not match MODEL_SHA256"):
        prepare_model({"MODEL_SHA256": "0" * 64}, local, sagemaker)
    digest = file_digest(DEMO_MODEL / "yolov3-tiny.weights")
    assert prepare_model({"MODEL_SHA256": digest.upper()}, local, sagemaker) == local


def run_sources(env: dict[str, str]) -> subprocess.CompletedProcess:
    starts_processes("python -m app.model.sources")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")}
    command = [sys.executable, "-X", "importtime", "-m", "app.model.sources"]
    return subprocess.run(command, cwd=ROOT, env={**environment, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.e2e
def test_the_command_prints_only_the_directory_and_loads_nothing_heavy(tmp_path):
    done = run_sources({"MODEL_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{tmp_path}\n"
    # -X importtime writes "import time: self | cumulative | module" for every module loaded.
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "app.model.files" in loaded
    assert not [name for name in loaded if name.split(".")[0] in (*HEAVY_MODULES, "numpy")]


@pytest.mark.e2e
def test_the_command_fails_with_one_line_and_prints_no_directory():
    done = run_sources({"MODEL_S3_URI": "https://models.example/rotifers/"})
    assert done.returncode == 1 and done.stdout == ""
    said = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert len(said) == 1 and said[0].startswith("cannot start: MODEL_S3_URI=https://models.example/rotifers/: ")


def test_a_model_of_the_users_without_weights_in_aimodel_is_its_source_not_the_demo(places):
    # The README's way: the user's .cfg and .names copied in, the .weights forgotten.
    local, sagemaker = places
    (local / "yolo-obj.cfg").write_text("[net]\n")
    (local / "obj.names").write_text("Rotifer\n")
    assert choose_source({}, local, sagemaker) == sources.ModelSource(local.absolute().as_uri(), local)
    assert prepare_model({}, local, sagemaker) == local
    assert sorted(p.name for p in local.iterdir()) == ["obj.names", "yolo-obj.cfg"]  # nothing fetched into it
    with pytest.raises(ModelError, match=r"^no \.weights file in model directory "):
        load_model_description(local)


def test_the_demos_own_files_left_in_aimodel_are_completed_by_the_demo(places):
    local, sagemaker = places
    shutil.copy(DEMO_MODEL / "yolov3-tiny.cfg", local / "yolov3-tiny.cfg")
    assert choose_source({}, local, sagemaker) == sources.ModelSource("demo:yolov3-tiny", local)
