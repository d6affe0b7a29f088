"""The threshold a model counts with when a request, the page or `count` names none.

A lab finds its model's count-optimal threshold with `python -m app evaluate
--save-threshold`, which writes it next to the weights as `<weights>.threshold.json`,
tied to the weights' sha256 (new weights do not inherit the old ones' threshold). The
operator's DEFAULT_THRESHOLD wins over that file; without either, darknet's 0.25.
"""

from __future__ import annotations

import json
import os
import tempfile
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
