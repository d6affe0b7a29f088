"""Exports cached next to the weights, keyed by what they were made from.

The key hashes the .cfg, the .weights and the exporter version, so a changed file or
exporter builds a new export and a stale one is never served. Building is once per
machine: the first worker to start exports under a file lock, the others wait for it
and load the file.
"""

from __future__ import annotations

import fcntl
import functools
import glob
import hashlib
import logging
import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..model_files import ModelDescription, file_digest
from . import EXPORTER_VERSION, export_darknet

KEY_LENGTH = 16  # hex digits of the sha256 in the file names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportPaths:
    weights_stem: str
    key: str
    fp32: Path
    int8: Path
    int8_report: Path


def export_paths(model: ModelDescription) -> ExportPaths:
    key = hashlib.sha256()
    key.update(f"exporter {EXPORTER_VERSION}\n".encode())
    key.update(model.files.cfg.read_bytes())
    stat = model.files.weights.stat()
    key.update(_digest(model.files.weights, stat.st_mtime_ns, stat.st_size).encode())
    short_key = key.hexdigest()[:KEY_LENGTH]
    stem = f"{model.files.weights.stem}.{short_key}"
    directory = _writable_directory(model.files.weights.parent)
    return ExportPaths(
        weights_stem=model.files.weights.stem,
        key=short_key,
        fp32=directory / f"{stem}.onnx",
        int8=directory / f"{stem}.int8.onnx",
        int8_report=directory / f"{stem}.int8-report.json",
    )


@functools.lru_cache(maxsize=8)
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    """The weights' sha256, once per file version: a YOLOv3 .weights is 240 MB."""
    del mtime_ns, size  # part of the cache key only
    return file_digest(path)


def ensure_export(model: ModelDescription) -> Path:
    """The fp32 export of this model, built if no worker built it before."""
    paths = export_paths(model)
    if paths.fp32.is_file():
        return paths.fp32
    with directory_lock(paths.fp32.parent):
        if not paths.fp32.is_file():  # another process may have built it while we waited
            started = time.perf_counter()
            exported = export_darknet(model.cfg_sections, model.files.weights)
            write_atomically(paths.fp32, exported.SerializeToString())
            log.info("exported %s to %s in %.2f s", model.files.weights.name, paths.fp32, time.perf_counter() - started)
            if paths.fp32.parent == model.files.weights.parent:  # a shared cache holds other models
                _remove_outdated(paths)
    return paths.fp32


def _remove_outdated(paths: ExportPaths) -> None:
    """Exports (and int8 versions) of earlier files under the same weights name: a new
    model replaced them, and each is as big as the weights."""
    pattern = re.escape(paths.weights_stem) + rf"\.([0-9a-f]{{{KEY_LENGTH}}})\.(onnx|int8\.onnx|int8-report\.json)"
    for path in paths.fp32.parent.glob(f"{glob.escape(paths.weights_stem)}.*"):
        match = re.fullmatch(pattern, path.name)
        if match and match.group(1) != paths.key:
            path.unlink(missing_ok=True)
            log.info("removed %s, made from earlier model files", path)


@contextmanager
def directory_lock(directory: Path):
    """An exclusive lock on the directory itself: no lock file left behind."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def write_atomically(path: Path, content: bytes) -> None:
    """Readers see the old file or the whole new one, never a half-written one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _writable_directory(preferred: Path) -> Path:
    """Next to the weights; a read-only model directory (a mounted volume, /opt/ml/model)
    gets the per-user cache directory, or the temporary one for a user without a home."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "darknet-service"
    temporary = Path(tempfile.gettempdir()) / f"darknet-service-{os.getuid()}"
    for candidate in (preferred, user_cache, temporary):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise OSError(f"no writable directory for the ONNX export: {preferred}, {user_cache}, {temporary}")
