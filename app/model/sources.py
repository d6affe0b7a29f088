"""Where the model comes from, decided in one place.

`model_dir(env)` only decides (Settings, the CLI, tests: nothing is downloaded);
`prepare_model(env)` decides and fetches what must be fetched. `python -m app.model.sources`
is what run.sh runs before gunicorn: it prints the model directory, the only line on
stdout; messages go to stderr, and a failure is one line there and a non-zero exit.
This module loads no Flask, OpenCV or engine; a fetcher's own imports (boto3) load
only when its scheme is used.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from app.log_lines import formatter

from .demo import DEMO_URI
from .demo import FILES as DEMO_FILES
from .files import ModelError, load_model_description
from .pins import parse_pins

log = logging.getLogger(__name__)
LOCAL_MODEL_DIR = Path("aimodel")
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")

# URI scheme -> "module:function" that mirrors the model files at a URI into a directory:
# fetch(uri, directory) -> the files, or a ModelError whose message is one line. A new
# source (https, another bucket kind) is one entry here and its module.
SOURCES: dict[str, str | None] = {
    "file": None,  # a directory on this machine: the files are served where they are
    "s3": "app.model.s3:fetch_model",
    "demo": "app.model.demo:fetch_demo_model",  # when nothing else is configured (run.sh only)
}


@dataclass(frozen=True)
class ModelSource:
    uri: str  # s3://bucket/prefix, demo:yolov3-tiny, file:///the/directory
    directory: Path  # where the service reads the files

    @property
    def scheme(self) -> str:
        return urlsplit(self.uri).scheme


def choose_source(
    env: Mapping[str, str] = os.environ, local: Path = LOCAL_MODEL_DIR, sagemaker: Path = SAGEMAKER_MODEL_DIR
) -> ModelSource:
    """MODEL_S3_URI, else MODEL_DIR, else ./aimodel with a model of the user's, else SageMaker's,
    else the demo."""
    if uri := env.get("MODEL_S3_URI", "").strip():
        # Its own folder: a fetched model never mixes with the files a user put in aimodel/.
        source = ModelSource(uri, Path(env.get("MODEL_DIR") or local / "s3"))
        # The demo is what nothing configured gets, not something to configure.
        known = [scheme for scheme, fetch in SOURCES.items() if fetch and scheme != urlsplit(DEMO_URI).scheme]
        if source.scheme not in known:
            known = ", ".join(known)
            raise ModelError(f"MODEL_S3_URI={uri}: not a scheme a model can be fetched from, known: {known}")
        return source
    if env.get("MODEL_DIR"):
        return _local(Path(env["MODEL_DIR"]))
    if holds_users_model(local):
        return _local(local)
    if sagemaker.is_dir():
        return _local(sagemaker)
    return ModelSource(DEMO_URI, local)


def holds_users_model(directory: Path) -> bool:
    """Weights (the demo's, fetched before, or the user's), or any model file that is not
    the demo's: a folder the user filled, even half (a .cfg and .names whose .weights are
    still copying). It is served, or refused in one line naming what is missing; the
    demo is never fetched into it."""
    model_files = [p for p in directory.glob("*") if p.suffix in (".weights", ".cfg", ".names", ".data")]
    return any(p.suffix == ".weights" or p.name not in DEMO_FILES for p in model_files)


def model_dir(
    env: Mapping[str, str] = os.environ, local: Path = LOCAL_MODEL_DIR, sagemaker: Path = SAGEMAKER_MODEL_DIR
) -> Path:
    """The model directory the environment names; fetches nothing."""
    return choose_source(env, local, sagemaker).directory


def prepare_model(
    env: Mapping[str, str] = os.environ, local: Path = LOCAL_MODEL_DIR, sagemaker: Path = SAGEMAKER_MODEL_DIR
) -> Path:
    """The model directory, with the files fetched into it where they come from elsewhere."""
    source = choose_source(env, local, sagemaker)
    fetcher = SOURCES[source.scheme]
    if fetcher is None:
        return source.directory
    _imported(fetcher)(source.uri, source.directory)
    try:
        pins = parse_pins(env.get("MODEL_SHA256", ""), env.get("CALIBRATION_SHA256", ""))
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    if pins is not None:
        # Checked here too, before gunicorn: a wrong model never gets as far as a server.
        load_model_description(source.directory, pins)
    log.info("model from %s ready in %s/", source.uri, source.directory)
    return source.directory


def _local(directory: Path) -> ModelSource:
    return ModelSource(directory.absolute().as_uri(), directory)


def _imported(fetcher: str) -> Callable[[str, Path], list[Path]]:
    module, _, function = fetcher.partition(":")
    return getattr(importlib.import_module(module), function)


def main() -> int:
    handler = logging.StreamHandler(sys.stderr)
    # The service's log format (LOG_FORMAT=json: JSON lines from the first), else bare messages.
    json_lines = os.environ.get("LOG_FORMAT", "").strip().lower() == "json"
    handler.setFormatter(formatter("json") if json_lines else logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        directory = prepare_model()
    except (ModelError, OSError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    print(directory.absolute(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
