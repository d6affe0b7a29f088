"""The threshold a model counts with when a request, the page or `count` names none.

A lab finds its model's count-optimal threshold with `python -m app evaluate
--save-threshold`, which writes it next to the weights as `<weights>.threshold.json`,
tied to the weights' sha256 (new weights do not inherit the old ones' threshold). The
operator's DEFAULT_THRESHOLD wins over that file; without either, darknet's 0.25.

A running service follows the file (SavedThreshold): each request stats it, and a new
inode, size or modification time reads it again; no restart, and no write ever.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .files import ModelError

DARKNET_THRESHOLD = 0.25  # darknet's Python API default
SUFFIX = ".threshold.json"


@dataclass(frozen=True)
class DefaultThreshold:
    value: float
    source: str  # where it comes from, in words: for /model and the logs

    def as_json(self) -> dict:
        return {"default_threshold": self.value, "default_threshold_source": self.source}


def threshold_file(weights: Path) -> Path:
    return weights.with_name(weights.name + SUFFIX)


def default_threshold(weights: Path, weights_sha256: str, setting: float | None) -> DefaultThreshold:
    """DEFAULT_THRESHOLD, else the saved one of these very weights, else 0.25."""
    if setting is not None:
        return DefaultThreshold(setting, "DEFAULT_THRESHOLD")
    path = threshold_file(weights)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return DefaultThreshold(DARKNET_THRESHOLD, "darknet's default")
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot be read as the saved threshold ({exc}); remove it or save it again") from None
    value = saved.get("threshold") if isinstance(saved, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ModelError(f"{path}: no threshold between 0 and 1 in it; remove it or save it again")
    if saved.get("weights_sha256") != weights_sha256:
        # Saved for other weights: never applied to these.
        return DefaultThreshold(DARKNET_THRESHOLD, f"darknet's default ({path.name} is for other weights)")
    return DefaultThreshold(float(value), f"{path.name} ({saved.get('source', 'saved')})")


class SavedThreshold:
    """The default threshold of a running service, kept up to date with the saved file.

    A stat per read (microseconds): the file is read again only when its inode, size or
    modification time changed (save_threshold replaces it whole, so a new inode). A file
    that stops making sense while the service runs keeps the last good value, with a
    warning in the log and in the source /model shows; at the start it stops the start."""

    def __init__(self, weights: Path, weights_sha256: str, setting: float | None):
        self._args = (weights, weights_sha256, setting)
        self._path = threshold_file(weights)
        self._lock = threading.Lock()
        self._signature = _signature(self._path)
        self._current = self._good = default_threshold(*self._args)

    @property
    def value(self) -> float:
        return self.current().value

    def as_json(self) -> dict:
        return self.current().as_json()

    def current(self) -> DefaultThreshold:
        if self._args[2] is not None:  # DEFAULT_THRESHOLD wins: no file to follow
            return self._current
        signature = _signature(self._path)
        if signature == self._signature:
            return self._current
        with self._lock:
            if signature != self._signature:
                self._signature = signature
                self._current = self._read_again()
        return self._current

    def _read_again(self) -> DefaultThreshold:
        log = logging.getLogger(__name__)
        try:
            threshold = default_threshold(*self._args)
        except ModelError as exc:
            log.warning("%s; still counting with %g", exc, self._good.value)
            good = self._good
            return DefaultThreshold(good.value, f"{good.source}; kept, as {self._path.name} cannot be used now")
        log.info("default threshold now %g (%s)", threshold.value, threshold.source)
        self._good = threshold
        return threshold


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def save_threshold(weights: Path, weights_sha256: str, threshold: float, source: str) -> Path:
    """Written whole or not at all (a temporary file renamed)."""
    path = threshold_file(weights)
    record = {
        "threshold": round(float(threshold), 4),
        "weights_sha256": weights_sha256,
        "source": source,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(record, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
