"""Finding a darknet model in a directory and checking that its files agree.

A model directory holds one .cfg, one .weights, and the class names: one .names file,
or the one a .data file's `names=` points to. Any problem is a ModelError whose
message is one line that says what to fix; the service refuses to start on it.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import logging
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from .darknet_cfg import (
    CONVOLUTIONAL_TYPES,
    MAXPOOL_TYPES,
    CfgError,
    NetworkInput,
    Section,
    Shape,
    at_least_one,
    check_yolo_anchors,
    check_yolo_filters,
    convolution_output,
    convolution_window,
    detection_layers,
    input_shape,
    layer_references,
    maxpool_output,
    network_input,
    parse_cfg,
    route_output,
    upsample_output,
)
from .pins import ModelPins, PinnedModel

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".cfg", ".weights", ".names", ".data")
WEIGHTS_HEADER_INTS = 3  # major, minor, revision; then `seen`, the images trained on
# Layers that read no weights and hand their input on unchanged.
PASS_ON_TYPES = ("yolo", "region", "dropout")
# Options that, set, make darknet's forks, OpenCV and the exporter read different floats
# (or none, or another layer's): such a cfg is not counted, rather than refused.
UNCOUNTED_OPTIONS = ("dontload", "dontloadscales", "cbn", "numload", "antialiasing", "maxpool_depth", "extra")
UNCOUNTED_OPTIONS += ("flatten", "sway", "rotate", "stretch", "stretch_sway")


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
    # Under MODEL_SHA256: the files' sha256 as checked against it. Whatever the service
    # derives from them (app/inference/onnx_export/cache.py) is then bound to these.
    pinned: PinnedModel | None = None


def load_model_description(directory: Path, pins: ModelPins | None = None) -> ModelDescription:
    """pins: MODEL_SHA256's; the cfg and names are parsed from the very bytes checked."""
    files = discover_model_files(directory)
    cfg, names_content = files.cfg.read_bytes(), files.names.read_bytes()
    pinned = None if pins is None else _pinned(files, pins, cfg, names_content)
    try:
        sections = parse_cfg(cfg.decode("utf-8-sig", errors="replace"))
        network = network_input(sections)
        layers = detection_layers(sections)
        check_yolo_anchors(sections)
        check_yolo_filters(sections)
        needed = floats_the_cfg_reads(sections)
    except CfgError as exc:  # "x.cfg line 8: [net] width=...", as the classes check below says it
        separator = " " if str(exc).startswith("line ") else ": "
        raise ModelError(f"{files.cfg}{separator}{exc}") from exc
    if network.channels != 3:
        raise ModelError(f"{files.cfg}: channels={network.channels}, only 3-channel (RGB) networks are supported")
    names = read_class_names(files.names, names_content)
    for layer in layers:
        if layer.classes != len(names):
            raise ModelError(
                f"{files.cfg} line {layer.line}: [{layer.type}] classes={layer.classes} "
                f"but {files.names.name} has {len(names)} names"
            )
    declared = _data_options(files.data).get("classes") if files.data else None
    if declared is not None and declared.strip() != str(len(names)):
        raise ModelError(f"{files.data}: classes={declared.strip()} but {files.names.name} has {len(names)} names")
    held = weights_floats(files.weights)
    if needed is None:
        log.warning(
            "%s: the .weights size is not checked against it (a layer or option darknet's forks read differently)",
            files.cfg,
        )
    elif held != needed:
        raise ModelError(weights_mismatch(str(files.weights), held, files.cfg.name, needed))
    return ModelDescription(files, names, network, tuple(sections), pinned)


def _pinned(files: ModelFiles, pins: ModelPins, cfg: bytes, names: bytes) -> PinnedModel:
    """The engines check what they load against these (the weights' bytes, the export's)."""
    pinned = PinnedModel(
        pins, hashlib.sha256(cfg).hexdigest(), hashlib.sha256(names).hexdigest(), model_file_sha256(files.weights)
    )
    if mismatch := pins.mismatch((files.cfg, pinned.cfg), (files.names, pinned.names), (files.weights, pinned.weights)):
        raise ModelError(mismatch)
    if not pins.covers_cfg_and_names:
        log.warning(
            "MODEL_SHA256 pins %s only: %s and %s are not covered (give the sha256 of all three)",
            files.weights.name,
            files.cfg.name,
            files.names.name,
        )
    return pinned


def weights_mismatch(weights: str, held: int, cfg: str, needed: int) -> str:
    """Either way wrong: darknet and OpenCV read what the cfg needs and ignore the rest
    (80-class weights under a 5-class cfg load, and count zeros), or read past the end."""
    reason = "the weights were trained for another cfg (classes, filters or layers differ)"
    if held < needed:
        reason += ", or the file was cut short"
    return f"{weights} holds {held} floats, {cfg} needs {needed}: {reason}"


def weights_seen_bytes(major: int, minor: int) -> int:
    """As darknet's load_weights: version 0.2 and later store `seen` in 64 bits."""
    return 8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4


def weights_floats(path: Path) -> int:
    """The floats after the header, from the header and the file size alone."""
    with path.open("rb") as stream:
        header = stream.read(4 * WEIGHTS_HEADER_INTS)
        size = stream.seek(0, 2)
    start = len(header) + 4  # a 32-bit `seen` at least
    if len(header) == 4 * WEIGHTS_HEADER_INTS:
        major, minor, _ = struct.unpack(f"<{WEIGHTS_HEADER_INTS}i", header)
        start = len(header) + weights_seen_bytes(major, minor)
    if size < start:
        raise ModelError(f"{path}: {size} bytes is too short for a darknet .weights file")
    return (size - start) // 4


def floats_the_cfg_reads(sections: list[Section]) -> int | None:
    """How many floats darknet reads from the .weights for this cfg (parser.c's
    load_weights_upto), following each layer's output shape; None where a layer or option
    is not counted here (UNCOUNTED_OPTIONS, a layer type not below)."""
    shape, outputs, total = input_shape(sections), [], 0
    for index, section in enumerate(sections[1:]):
        if "share_index" in section.options or any(section.get_float(key, 0) for key in UNCOUNTED_OPTIONS):
            return None  # share_index: another layer's weights, whatever its value
        counted = _layer_floats(section, index, shape, outputs)
        if counted is None:
            return None
        floats, shape = counted
        total += floats
        outputs.append(shape)
    return total


def _layer_floats(section: Section, index: int, shape: Shape, outputs: list[Shape]) -> tuple[int, Shape] | None:
    kind = section.type
    normalized = 3 if section.get_int("batch_normalize", 0) else 0  # scales, rolling mean, rolling variance
    if kind in CONVOLUTIONAL_TYPES:
        if section.get_float("dilation", 1) != 1:
            return None
        out, size = convolution_output(section, shape), convolution_window(section).size
        groups = at_least_one(section, "groups", 1)
        return out.channels * (1 + normalized + shape.channels // groups * size * size), out  # 1: bias
    if kind in ("connected", "conn"):
        out = Shape(section.get_int("output", 1), 1, 1)
        return out.channels * (1 + normalized + shape.channels * shape.height * shape.width), out
    if kind in MAXPOOL_TYPES:
        return 0, maxpool_output(section, shape)
    if kind in ("avgpool", "avg"):
        return 0, Shape(shape.channels, 1, 1)
    if kind == "route":
        return 0, route_output(section, [outputs[i] for i in layer_references(section, index, "layers")])
    if kind == "shortcut":
        layer_references(section, index, "from")
        return (0, shape) if section.options.get("weights_type", "none") == "none" else None
    if kind == "upsample":
        return 0, upsample_output(section, shape)
    if kind == "reorg":
        stride = at_least_one(section, "stride", 1)
        if section.get_int("reverse", 0):
            return 0, Shape(shape.channels // stride**2, shape.height * stride, shape.width * stride)
        return 0, Shape(shape.channels * stride**2, shape.height // stride, shape.width // stride)
    if kind in PASS_ON_TYPES:
        return 0, shape
    return None


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


def read_class_names(path: Path, content: bytes | None = None) -> tuple[str, ...]:
    """content: the file's bytes, where they were read already (and checked)."""
    # Files saved on Windows carry CR and sometimes a BOM; blank lines are not classes.
    content = path.read_bytes() if content is None else content
    lines = content.decode("utf-8-sig", errors="replace").splitlines()
    names = tuple(name for name in (line.strip() for line in lines) if name)
    if not names:
        raise ModelError(f"{path} holds no class names")
    # Counted once (names.count per name took 20 s for 40,000 names); a few named.
    duplicates = sorted(name for name, times in collections.Counter(names).items() if times > 1)
    if duplicates:
        more = f" and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
        raise ModelError(f"{path}: class names must be unique, repeated: {', '.join(duplicates[:10])}{more}")
    return names


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    hasher = hashlib.new(algorithm)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def model_file_sha256(path: Path) -> str:
    """A model file's sha256, read once per version of the file: the export's key and
    stamp, /model and the build-info metric all ask for the weights', and a YOLOv3
    .weights is 240 MB. A version is its inode and times: any write changes the ctime,
    which no user can set back (an mtime and size kept by an edit are not enough)."""
    stat = path.stat()
    return _versioned_sha256(path, (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


@functools.lru_cache(maxsize=16)
def _versioned_sha256(path: Path, version: tuple[int, ...]) -> str:
    del version  # part of the cache key only
    return file_digest(path)


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
