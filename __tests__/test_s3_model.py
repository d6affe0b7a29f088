"""The model from S3 at start, against moto's S3-compatible server on 127.0.0.1."""

import contextlib
import gc
import os
import subprocess
import sys

import boto3
import pytest
import requests
from support import ROOT, CuttingProxy, MotoServer, RunningService

from app.model.files import file_digest
from app.model.s3 import S3ModelError, fetch_model
from app.model.sources import prepare_model

# Every test here talks to moto's S3 server, a process of its own.
pytestmark = pytest.mark.e2e

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
MODEL_FILES = ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")
# moto's default account: what the fixtures set buckets up with.
ADMIN = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server():
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch, s3_server):
    for key, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server.url}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def s3():
    """S3 clients for a test, closed after it (open sockets would be ResourceWarnings)."""
    clients = []

    def make(endpoint: str, **credentials):
        clients.append(boto3.client("s3", endpoint_url=endpoint, **credentials))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def model_uri(s3_server, model_dir):
    with contextlib.closing(boto3.client("s3", endpoint_url=s3_server.url, **ADMIN)) as client:
        client.create_bucket(Bucket="lab-models")
        for name in MODEL_FILES:
            client.upload_file(str(model_dir / name), "lab-models", f"rotifers/v1/{name}")
        client.put_object(Bucket="lab-models", Key="rotifers/v1/notes.txt", Body=b"not a model file")
        client.put_object(Bucket="lab-models", Key="rotifers/v1/old/yolov3.weights", Body=b"nested: not this model")
    return "s3://lab-models/rotifers/v1"


def test_the_service_starts_from_s3_and_counts(model_uri, s3_server, tmp_path):
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server.url, "MODEL_S3_URI": model_uri, "WORKERS": "1"}
    service = RunningService({**env, "MODEL_DIR": str(tmp_path / "model")}, tmp_path / "service.log")
    try:
        service.wait_ready()
        response = service.post_photo("dog.jpg", timeout=30)
        stat = response.json()["stat"]
        assert stat["dog"] == 1 and stat["bicycle"] == 1
    finally:
        service.stop()
    log = service.output()
    assert log.index("Getting weights from S3") < log.index("running gunicorn...")
    fetched = [p.name for p in (tmp_path / "model").iterdir() if not p.name.startswith(".") and p.suffix != ".onnx"]
    assert sorted(fetched) == sorted(MODEL_FILES)  # and the ONNX export built from them


def test_the_model_goes_into_aimodel_s3_unless_model_dir_says_where(model_uri, tmp_path):
    directory = prepare_model({"MODEL_S3_URI": model_uri}, local=tmp_path / "aimodel")
    assert directory == tmp_path / "aimodel" / "s3"
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == sorted(MODEL_FILES)
    assert prepare_model({"MODEL_S3_URI": model_uri, "MODEL_DIR": str(tmp_path / "m")}) == tmp_path / "m"


def test_the_start_command_prints_the_directory_alone_on_stdout(model_uri, tmp_path):
    env = {**os.environ, "MODEL_S3_URI": model_uri, "MODEL_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "app.model.sources"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout == f"{tmp_path}\n"
    assert "Getting weights from S3" in done.stderr  # what README tells a user to look for
    assert (tmp_path / "yolov3-tiny.weights").is_file()


def test_files_already_here_are_not_downloaded_again(model_uri, model_dir, tmp_path):
    fetched = fetch_model(model_uri, tmp_path)
    assert sorted(p.name for p in fetched) == sorted(MODEL_FILES)
    assert file_digest(tmp_path / "yolov3-tiny.weights") == file_digest(model_dir / "yolov3-tiny.weights")
    stamps = {p.name: p.stat().st_mtime_ns for p in fetched}
    fetch_model(model_uri, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in fetched} == stamps


def test_a_changed_file_is_fetched_and_files_of_an_old_model_removed(model_uri, tmp_path):
    (tmp_path / "yolov3-tiny.weights").write_bytes(b"x" * 10)  # an older, different version
    (tmp_path / "old-model.cfg").write_text("[net]\n")
    fetch_model(model_uri, tmp_path)
    assert (tmp_path / "yolov3-tiny.weights").stat().st_size > 30_000_000
    assert not (tmp_path / "old-model.cfg").exists()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://no-such-bucket/models", "bucket no-such-bucket does not exist"),
        ("s3://lab-models/nothing-here/", "no .weights file under s3://lab-models/nothing-here/"),
        ("https://lab-models/x", "is not s3://bucket/prefix"),
    ],
)
def test_missing_bucket_or_weights_is_one_clear_error(model_uri, tmp_path, uri, message):
    with pytest.raises(S3ModelError, match=message):
        fetch_model(uri, tmp_path)


def test_access_denied_is_said_so(s3, tmp_path):
    # A server that checks IAM after the first 4 requests (the set-up below).
    server = MotoServer({"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    try:
        s3(server.url, **ADMIN).create_bucket(Bucket="private")
        s3(server.url, **ADMIN).put_object(Bucket="private", Key="m/yolov3-tiny.weights", Body=b"w")
        with contextlib.closing(boto3.client("iam", endpoint_url=server.url, **ADMIN)) as iam:
            iam.create_user(UserName="visitor")
            key = iam.create_access_key(UserName="visitor")["AccessKey"]
        visitor = s3(
            server.url,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name="us-east-1",
        )
        with pytest.raises(S3ModelError, match=r"access denied to s3://private/m/ \(AccessDenied\)"):
            fetch_model("s3://private/m", tmp_path, client=visitor)
    finally:
        server.stop()


# urllib3 drops the connections the proxy cut without closing their sockets: a
# ResourceWarning at garbage collection that says nothing about this code.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_transfer_cut_half_way_leaves_no_partial_model_and_a_restart_completes(model_uri, s3_server, s3, tmp_path):
    proxy = CuttingProxy(s3_server.port, cut_after=4_000_000)  # the 35 MB weights never arrive whole
    try:
        client = s3(proxy.url)
        with pytest.raises(S3ModelError, match=r"yolov3-tiny\.weights: download failed 2 times"):
            fetch_model(model_uri, tmp_path, client=client, attempts=2, backoff_s=0.01)
        assert not [p for p in tmp_path.iterdir() if p.suffix == ".weights" or p.name.endswith(".partial")]
        proxy.cut_after = None  # the server is back
        fetch_model(model_uri, tmp_path, client=client)
        assert (tmp_path / "yolov3-tiny.weights").stat().st_size > 30_000_000
    finally:
        proxy.close()
        gc.collect()  # the dropped sockets are collected here, under this test's filter


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"MODEL_S3_URI": "s3://no-such-bucket/m"}, "cannot start: bucket no-such-bucket does not exist"),
        ({"MODEL_SHA256": "0" * 64}, "does not match MODEL_SHA256"),
    ],
)
def test_run_sh_does_not_serve_without_the_right_model(model_uri, s3_server, tmp_path, extra, message):
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server.url, "MODEL_S3_URI": model_uri, "MODEL_DIR": str(tmp_path)}
    service = RunningService({**env, **extra}, tmp_path / "service.log")
    assert service.process.wait(120) != 0
    log = service.output()
    assert message in log and "Listening at" not in log, log


def test_model_sha256_that_matches_is_served(model_uri, model_dir, s3_server, tmp_path):
    digest = file_digest(model_dir / "yolov3-tiny.weights")
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server.url, "MODEL_S3_URI": model_uri, "MODEL_SHA256": digest}
    service = RunningService({**env, "MODEL_DIR": str(tmp_path), "WORKERS": "1"}, tmp_path / "service.log")
    try:
        service.wait_ready()
        # The model served is the one whose sha256 was asked for, and it counts.
        assert requests.get(f"{service.url}/model", timeout=10).json()["files"]["yolov3-tiny.weights"] == digest
        assert service.post_photo("dog.jpg").json()["stat"]["dog"] == 1
    finally:
        service.stop()
    assert os.path.exists(tmp_path / "yolov3-tiny.weights")
