"""darknet's .weights format: a small header, then every layer's floats in cfg order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.model.files import WEIGHTS_HEADER_INTS, weights_seen_bytes


class WeightsError(ValueError):
    """The .weights file does not hold what the .cfg says it should."""


@dataclass(frozen=True)
class WeightsHeader:
    major: int
    minor: int
    revision: int
    seen: int  # images seen in training


def read_weights(path: Path, raw: bytes | None = None) -> tuple[WeightsHeader, np.ndarray]:
    """raw: the file's bytes, where they were read already."""
    raw = path.read_bytes() if raw is None else raw
    if len(raw) < 4 * WEIGHTS_HEADER_INTS + 4:
        raise WeightsError(f"{path.name}: {len(raw)} bytes is too short for a darknet .weights file")
    major, minor, revision = np.frombuffer(raw, "<i4", WEIGHTS_HEADER_INTS).tolist()
    seen_dtype = _seen_dtype(major, minor)
    seen = int(np.frombuffer(raw, seen_dtype, 1, offset=4 * WEIGHTS_HEADER_INTS)[0])
    start = 4 * WEIGHTS_HEADER_INTS + np.dtype(seen_dtype).itemsize
    usable = (len(raw) - start) // 4 * 4
    return WeightsHeader(major, minor, revision, seen), np.frombuffer(raw[start : start + usable], "<f4")


def write_weights(path: Path, values: np.ndarray, header: WeightsHeader = WeightsHeader(0, 2, 0, 0)) -> None:
    """The inverse of read_weights (tests and benchmarks write random models with it)."""
    with path.open("wb") as stream:
        stream.write(np.array([header.major, header.minor, header.revision], "<i4").tobytes())
        stream.write(np.array([header.seen], _seen_dtype(header.major, header.minor)).tobytes())
        stream.write(np.asarray(values, "<f4").tobytes())


def _seen_dtype(major: int, minor: int) -> str:
    return "<u8" if weights_seen_bytes(major, minor) == 8 else "<u4"


class WeightsCursor:
    """Hands out the floats in file order, as darknet's load_*_weights read them."""

    def __init__(self, values: np.ndarray, name: str):
        self._values = values
        self._offset = 0
        self._name = name

    def take(self, count: int, layer: str) -> np.ndarray:
        end = self._offset + count
        if end > len(self._values):
            raise WeightsError(
                f"{self._name} ends at layer {layer}: it needs {end} floats, the file has {len(self._values)} "
                "(weights and cfg do not belong together)"
            )
        chunk = self._values[self._offset : end]
        self._offset = end
        return chunk

    @property
    def remaining(self) -> int:
        return len(self._values) - self._offset

    @property
    def used(self) -> int:
        return self._offset
