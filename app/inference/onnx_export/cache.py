"""Exports cached next to the weights, keyed by what they were made from.

The key hashes the .cfg, the .weights and the exporter version, so a changed file or
exporter builds a new export and a stale one is never served. Building is once per
machine: the first worker to start exports under a file lock, the others wait for it
and load the file.

A file name proves nothing: each export carries the sha256 of the cfg and weights it
was made from (its stamp) and of its own graph as written (the weights inside it
included), both checked before it is served: an export edited in place, its stamp
kept, is exported again. That catches a stale or damaged file, not a forged one: the
stamp is written by code anyone can run, so whoever can write the cache directory can
stamp an edited export. Under MODEL_SHA256 nothing in the cache directory is believed
(pinned_export): the export is deterministic (the same cfg, weights, exporter and onnx
give the same bytes), so the pinned files are exported again in memory, once per process
tree, and the bytes the engines load are checked against that export's sha256. Where
the model directory is read-only the cache is a directory of the service's own user,
mode 0700; one that another user could write is not used.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import helper

from app.model.files import ModelDescription, ModelError, model_file_sha256

from . import EXPORTER_VERSION, export_darknet

KEY_LENGTH = 16  # hex digits of the sha256 in the file names
# <weights stem>.<key>.onnx, the int8 models and report `python -m app calibrate` adds,
# and OpenVINO's cache of compiled models (a directory).
EXPORT_NAME = re.compile(
    rf"(?P<stem>.+)\.(?P<key>[0-9a-f]{{{KEY_LENGTH}}})\."
    r"(?:onnx|int8\.onnx|int8-report\.json|openvino-int8\.(?:xml|bin)|(?P<cache>openvino-cache))"
)
STAMP_KEYS = ("source_cfg_sha256", "source_weights_sha256")
CONTENT_KEY = "graph_sha256"  # the graph as written: its nodes and every weight in it
FOUND_CONTENT = "graph_sha256 (found)"  # what read_stamp computed from the file, beside the metadata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportPaths:
    weights_stem: str
    key: str
    fp32: Path
    int8: Path
    int8_report: Path
    openvino_int8: Path  # NNCF's int8 model in OpenVINO's format (.xml, its weights in .bin beside)
    openvino_cache: Path  # OpenVINO's compiled models of this export, a directory


def export_paths(model: ModelDescription) -> ExportPaths:
    key = hashlib.sha256()
    key.update(f"exporter {EXPORTER_VERSION}\n".encode())
    key.update(model.files.cfg.read_bytes())
    key.update(model_file_sha256(model.files.weights).encode())
    short_key = key.hexdigest()[:KEY_LENGTH]
    stem = f"{model.files.weights.stem}.{short_key}"
    directory = _writable_directory(model.files.weights.parent)
    return ExportPaths(
        weights_stem=model.files.weights.stem,
        key=short_key,
        fp32=directory / f"{stem}.onnx",
        int8=directory / f"{stem}.int8.onnx",
        int8_report=directory / f"{stem}.int8-report.json",
        openvino_int8=directory / f"{stem}.openvino-int8.xml",
        openvino_cache=directory / f"{stem}.openvino-cache",
    )


class ExportMismatch(ValueError):
    """An ONNX file that was not made from these model files."""


def export_stamp(model: ModelDescription) -> dict[str, str]:
    """What an export (or its int8 version) made from these files carries."""
    if model.pinned is not None:  # the digests of the bytes checked against MODEL_SHA256
        return {"source_cfg_sha256": model.pinned.cfg, "source_weights_sha256": model.pinned.weights}
    return {
        "source_cfg_sha256": hashlib.sha256(model.files.cfg.read_bytes()).hexdigest(),
        "source_weights_sha256": model_file_sha256(model.files.weights),
    }


def stamp(exported: onnx.ModelProto, model: ModelDescription) -> onnx.ModelProto:
    properties = {prop.key: prop.value for prop in exported.metadata_props} | export_stamp(model)
    properties[CONTENT_KEY] = graph_sha256(exported)
    helper.set_model_props(exported, properties)
    return exported


def graph_sha256(model: onnx.ModelProto) -> str:
    # protobuf writes a message without maps the same way each time: the digest is stable.
    return hashlib.sha256(model.graph.SerializeToString()).hexdigest()


def check_stamp(path: Path, found: dict[str, str], model: ModelDescription) -> None:
    """found: the file's metadata (from onnx, or an onnxruntime session's); from
    read_stamp, also its graph's digest, checked against the one recorded at writing."""
    expected = export_stamp(model)
    if {key: found.get(key) for key in STAMP_KEYS} != expected:
        raise ExportMismatch(
            f"{path} was not made from {model.files.cfg.name} and {model.files.weights.name} "
            f"(its weights sha256 {found.get('source_weights_sha256') or 'is not recorded'}, "
            f"the weights' is {expected['source_weights_sha256']})"
        )
    if FOUND_CONTENT in found and found[FOUND_CONTENT] != found.get(CONTENT_KEY):
        recorded = found.get(CONTENT_KEY) or "none recorded"
        raise ExportMismatch(
            f"{path} was changed after it was written (its graph's sha256 is {found[FOUND_CONTENT]}, "
            f"recorded at writing: {recorded})"
        )


def read_stamp(path: Path) -> dict[str, str]:
    stat = path.stat()
    return dict(_stamp_of(path, (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)))


@functools.lru_cache(maxsize=8)
def _stamp_of(path: Path, version: tuple[int, ...]) -> tuple[tuple[str, str], ...]:
    """Once per file version (as model_file_sha256's): onnx.load reads the whole file
    (240 MB for a YOLOv3); its graph's digest costs a tenth of the load."""
    del version  # part of the cache key only
    loaded = onnx.load(str(path), load_external_data=False)
    properties = tuple((prop.key, prop.value) for prop in loaded.metadata_props)
    return (*properties, (FOUND_CONTENT, graph_sha256(loaded)))


def ensure_export(model: ModelDescription) -> Path:
    """The fp32 export of this model, built if no worker built it before, or rebuilt
    when the file there was not made from these model files."""
    if model.pinned is not None:
        pinned_export(model)
        return export_paths(model).fp32
    paths = export_paths(model)
    if _is_stamped(paths.fp32, model):
        return paths.fp32
    with directory_lock(paths.fp32.parent):
        if not _is_stamped(paths.fp32, model):  # another process may have built it while we waited
            started = time.perf_counter()
            exported = stamp(export_darknet(model.cfg_sections, model.files.weights), model)
            write_atomically(paths.fp32, exported.SerializeToString())
            log.info("exported %s to %s in %.2f s", model.files.weights.name, paths.fp32, time.perf_counter() - started)
            if paths.fp32.parent == model.files.weights.parent:  # a shared cache holds other models
                _remove_outdated(paths)
    return paths.fp32


# (cfg sha256, weights sha256, exporter version) -> the sha256 of their export's bytes:
# made in gunicorn's master before it forks, so a worker inherits it and exports nothing.
_PINNED_EXPORTS: dict[tuple[str, str, str], str] = {}


def pinned_export(model: ModelDescription) -> bytes:
    """Under MODEL_SHA256: the export of the pinned files, as bytes to load. The cached
    file's bytes when they are those of the export made again in memory from the pinned
    files, else that export, written over the file."""
    expected, made = _pinned_export_sha256(model)
    paths = export_paths(model)
    content = _content_if(paths.fp32, expected)
    if content is not None:
        return content
    with directory_lock(paths.fp32.parent):
        content = _content_if(paths.fp32, expected)  # another worker may have written it while we waited
        if content is not None:
            return content
        if paths.fp32.exists():
            log.warning(
                "%s is not the export of the files MODEL_SHA256 pins (its sha256 is not %s); exporting again",
                paths.fp32,
                expected,
            )
        made = made or _export_pinned(model)
        write_atomically(paths.fp32, made)
        log.info("wrote the export of %s to %s", model.files.weights.name, paths.fp32)
        if paths.fp32.parent == model.files.weights.parent:
            _remove_outdated(paths)
    return made


def pinned_export_sha256(model: ModelDescription) -> str:
    """The sha256 the export of the pinned files has (what calibrate's report must name)."""
    return _pinned_export_sha256(model)[0]


def _pinned_export_sha256(model: ModelDescription) -> tuple[str, bytes | None]:
    """The digest, and the export where it had to be made for it (once per process tree)."""
    key = (model.pinned.cfg, model.pinned.weights, EXPORTER_VERSION)
    if key in _PINNED_EXPORTS:
        return _PINNED_EXPORTS[key], None
    made = _export_pinned(model)
    _PINNED_EXPORTS[key] = hashlib.sha256(made).hexdigest()
    return _PINNED_EXPORTS[key], made


def _export_pinned(model: ModelDescription) -> bytes:
    started = time.perf_counter()
    weights = model.files.weights.read_bytes()  # read once: what is hashed is what is exported
    if hashlib.sha256(weights).hexdigest() != model.pinned.weights:
        raise ModelError(f"{model.files.weights} changed after it was checked against MODEL_SHA256")
    exported = stamp(export_darknet(model.cfg_sections, model.files.weights, weights), model)
    content = exported.SerializeToString()
    log.info("exported %s in memory in %.2f s", model.files.weights.name, time.perf_counter() - started)
    return content


def _content_if(path: Path, sha256: str) -> bytes | None:
    try:
        content = path.read_bytes()
    except OSError:  # not there (yet), or not a file: exported anew
        return None
    return content if hashlib.sha256(content).hexdigest() == sha256 else None


def _is_stamped(path: Path, model: ModelDescription) -> bool:
    if not path.is_file():
        return False
    try:
        check_stamp(path, read_stamp(path), model)
    except Exception as exc:  # a mismatch, or a damaged file onnx cannot parse: build it anew
        log.warning("%s; exporting again", exc)
        return False
    return True


def _remove_outdated(paths: ExportPaths) -> None:
    """In the model directory, the exports (and int8 versions) of earlier files under the
    same weights name, and those of weights no longer there: a new model replaced them,
    and each is as big as its weights. Only names this cache writes: files, and OpenVINO's
    compiled-model directories."""
    directory = paths.fp32.parent
    weights_stems = {path.stem for path in directory.iterdir() if path.suffix.lower() == ".weights"}
    for path in directory.iterdir():
        match = EXPORT_NAME.fullmatch(path.name)
        if not match or (match["stem"], match["key"]) == (paths.weights_stem, paths.key):
            continue
        if bool(match["cache"]) != (path.is_dir() and not path.is_symlink()):  # a cache is a directory, the rest files
            continue
        if match["stem"] == paths.weights_stem or match["stem"] not in weights_stems:
            try:
                shutil.rmtree(path) if match["cache"] else path.unlink()
            except FileNotFoundError:  # another worker's cleanup came first
                continue
            except OSError as exc:  # not ours to remove after all: the new export serves regardless
                log.warning("could not remove the outdated export %s: %s", path, exc)
                continue
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


def is_private_directory(path: Path) -> bool:
    """A real directory (no symlink) of this user that no one else can read or write:
    in a shared /tmp another user could otherwise plant an export under the right name."""
    try:
        status = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(status.st_mode) and status.st_uid == os.getuid() and not status.st_mode & 0o077


def _writable_directory(preferred: Path) -> Path:
    """Next to the weights; a read-only model directory (a mounted volume, /opt/ml/model)
    gets the per-user cache directory, or the temporary one for a user without a home:
    either only when this user owns it and nobody else may write or read it."""
    if os.access(preferred, os.W_OK):
        return preferred
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "darknet-service"
    temporary = Path(tempfile.gettempdir()) / f"darknet-service-{os.getuid()}"
    refused = []
    for candidate in (user_cache, temporary):
        try:
            candidate.parent.mkdir(parents=True, exist_ok=True)
            candidate.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            continue
        if not is_private_directory(candidate):
            refused.append(f"{candidate} (not a private directory of uid {os.getuid()})")
        elif os.access(candidate, os.W_OK):
            return candidate
    reasons = "; ".join(refused) or f"{user_cache}, {temporary} cannot be made"
    raise OSError(f"no private writable directory for the ONNX export: {preferred} is read-only; {reasons}")
