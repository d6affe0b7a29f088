"""MODEL_SHA256 and CALIBRATION_SHA256: serve only the files that were meant to be served.

MODEL_SHA256 holds the sha256 of the .weights alone (as before), or of each of the .cfg,
the .names and the .weights, in any order, separated by commas or spaces:

    MODEL_SHA256=$(sha256sum model/*.cfg model/*.names model/*.weights | cut -c1-64 | paste -sd,)

With one digest it must be the weights', and the .cfg and .names are not covered (a
line at start says so). With more, each of the three files must have its digest there,
and each digest there must be one of theirs. CALIBRATION_SHA256 is the sha256 of the
report `python -m app calibrate` writes (it prints it): the report records the digest of
every model it made, so it binds them; under MODEL_SHA256 only a pinned report is read.

This module only parses and compares; app/model/files.py reads the files and raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ModelPins:
    digests: frozenset[str]  # MODEL_SHA256's
    calibration: str = ""  # CALIBRATION_SHA256, "" when not set

    @property
    def covers_cfg_and_names(self) -> bool:
        return len(self.digests) > 1

    def mismatch(self, cfg: tuple[Path, str], names: tuple[Path, str], weights: tuple[Path, str]) -> str | None:
        """Why these files (path, sha256 of what was read) are not the pinned ones; None when they are."""
        pinned = ",".join(sorted(self.digests))
        path, digest = weights
        if digest not in self.digests:
            return f"{path}: sha256 {digest} does not match MODEL_SHA256={pinned}"
        if not self.covers_cfg_and_names:
            return None
        for path, digest in (cfg, names):
            if digest not in self.digests:
                return f"{path}: sha256 {digest} is not one of MODEL_SHA256's ({pinned})"
        stray = sorted(self.digests - {cfg[1], names[1], weights[1]})
        if stray:
            return (
                f"MODEL_SHA256 holds {', '.join(stray)}, the sha256 of none of {cfg[0].name}, {names[0].name}, "
                f"{weights[0].name}: give the weights' alone, or the three files' each"
            )
        return None


@dataclass(frozen=True)
class PinnedModel:
    """A model whose files matched the pins when it was loaded: their sha256, of the
    bytes that were parsed (cfg, names) and hashed (weights)."""

    pins: ModelPins
    cfg: str
    names: str
    weights: str


def parse_pins(model_sha256: str, calibration_sha256: str = "") -> ModelPins | None:
    """None where MODEL_SHA256 is not set; ValueError, one line, for a value that is no pin."""
    digests = [digest.lower() for digest in re.split(r"[\s,]+", model_sha256.strip()) if digest]
    calibration = calibration_sha256.strip().lower()
    if not digests:
        if calibration:
            raise ValueError("CALIBRATION_SHA256 is set but MODEL_SHA256 is not: pin the model files too")
        return None
    for name, values in (("MODEL_SHA256", digests), ("CALIBRATION_SHA256", [calibration] if calibration else [])):
        for value in values:
            if not SHA256.fullmatch(value):
                raise ValueError(f"{name}: {value[:80]!r} is not a sha256 (64 hex digits)")
    return ModelPins(frozenset(digests), calibration)
