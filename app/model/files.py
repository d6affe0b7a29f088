"""Finding a darknet model in a directory and checking that its files agree.

A model directory holds one .cfg, one .weights, and the class names: one .names file,
or the one a .data file's `names=` points to. Any problem is a ModelError whose
message is one line that says what to fix; the service refuses to start on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from .darknet_cfg import (
    CfgError,
    NetworkInput,
    Section,
    check_yolo_anchors,
    detection_layers,
    network_input,
    parse_cfg,
)

MODEL_SUFFIXES = (".cfg", ".weights", ".names", ".data")


class ModelError(Exception):
    """The model directory is missing, ambiguous or inconsistent."""


@dataclass(frozen=True)
class ModelFiles:
    directory: Path
    cfg: Path
    weights: Path
    names: Path
    data: Path | None = None


@dataclass(frozen=True)
class ModelDescription:
    """Everything an engine and the HTTP layer need to know about a loaded model."""

    files: ModelFiles
    class_names: tuple[str, ...]
    network: NetworkInput
    cfg_sections: tuple[Section, ...]


def load_model_description(directory: Path) -> ModelDescription:
    files = discover_model_files(directory)
    try:
        sections = parse_cfg(files.cfg.read_text(encoding="utf-8-sig", errors="replace"))
        network = network_input(sections)
        layers = detection_layers(sections)
        check_yolo_anchors(sections)
    except CfgError as exc:  # "x.cfg line 8: [net] width=...", as the classes check below says it
        separator = " " if str(exc).startswith("line ") else ": "
        raise ModelError(f"{files.cfg}{separator}{exc}") from exc
    if network.channels != 3:
        raise ModelError(f"{files.cfg}: channels={network.channels}, only 3-channel (RGB) networks are supported")
    names = read_class_names(files.names)
    for layer in layers:
        if layer.classes != len(names):
            raise ModelError(
                f"{files.cfg} line {layer.line}: [{layer.type}] classes={layer.classes} "
                f"but {files.names.name} has {len(names)} names"
            )
    declared = _data_options(files.data).get("classes") if files.data else None
    if declared is not None and declared.strip() != str(len(names)):
        raise ModelError(f"{files.data}: classes={declared.strip()} but {files.names.name} has {len(names)} names")
    return ModelDescription(files, names, network, tuple(sections))


def discover_model_files(directory: Path) -> ModelFiles:
    if not directory.is_dir():
        raise ModelError(
            f"model directory {directory} does not exist (set MODEL_DIR or run scripts/fetch_demo_model.py)"
        )
    cfg = _exactly_one(directory, ".cfg")
    weights = _exactly_one(directory, ".weights")
    if weights.stat().st_size == 0:
        raise ModelError(f"{weights} is empty")
    data = _at_most_one(directory, ".data")
    if data is not None and "names" in (options := _data_options(data)):
        names = _resolve_in_model_dir(directory, options["names"].strip(), data)
    else:
        names = _exactly_one(directory, ".names")
    return ModelFiles(directory, cfg, weights, names, data)


def read_class_names(path: Path) -> tuple[str, ...]:
    # Files saved on Windows carry CR and sometimes a BOM; blank lines are not classes.
    lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    names = tuple(name for name in (line.strip() for line in lines) if name)
    if not names:
        raise ModelError(f"{path} holds no class names")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelError(f"{path}: class names must be unique, repeated: {', '.join(duplicates)}")
    return names


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    hasher = hashlib.new(algorithm)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def verify_weights_sha256(weights: Path, expected: str) -> None:
    """MODEL_SHA256: serve only the weights that were meant to be served."""
    actual = file_digest(weights)
    if actual != expected.strip().lower():
        raise ModelError(f"{weights}: sha256 {actual} does not match MODEL_SHA256={expected.strip()}")


def _model_files(directory: Path, suffix: str) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if p.suffix.lower() == suffix and not p.name.startswith(".") and p.is_file()
    )


def _exactly_one(directory: Path, suffix: str) -> Path:
    found = _at_most_one(directory, suffix)
    if found is None:
        raise ModelError(f"no {suffix} file in model directory {directory}")
    return found


def _at_most_one(directory: Path, suffix: str) -> Path | None:
    found = _model_files(directory, suffix)
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise ModelError(f"ambiguous model in {directory}: {len(found)} {suffix} files ({listed}), keep one")
    return found[0] if found else None


def _data_options(path: Path) -> dict[str, str]:
    options: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.strip().startswith("#"):
            options.setdefault(key.strip(), value.strip())
    return options


def _resolve_in_model_dir(directory: Path, written: str, data_file: Path) -> Path:
    """A .data file holds paths from the machine it was trained on: fall back to the model dir."""
    as_written = Path(written)
    if as_written.is_absolute() and as_written.is_file():
        return as_written
    base_name = (PureWindowsPath if "\\" in written else PurePosixPath)(written).name
    for candidate in (directory / written, directory / base_name):
        if candidate.is_file():
            return candidate
    raise ModelError(f"{data_file}: names={written} not found, nor {base_name} in {directory}")
