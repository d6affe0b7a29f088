"""Labelled photos in darknet's own layout: a `.data` file whose `valid=` names a list
of photos, or a folder of photos; a YOLO `.txt` beside each photo, one object a line,
`class cx cy w h` relative to the photo (darknet also looks in a `labels/` folder next
to `images/` or `JPEGImages/`).

Paths in a `.data` or a list come from the machine the model was trained on: one that
does not exist here is looked up under the `.data`'s folder by its trailing parts.
Bad data is a problem line and the run goes on: the line, the photo, or nothing is
skipped, never the whole evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from app.vision.images import photos_in

LABEL_SUFFIX = ".txt"
DARKNET_IMAGE_FOLDERS = ("images", "JPEGImages")


class DatasetError(ValueError):
    """Nothing can be evaluated from what was given."""


@dataclass(frozen=True)
class RelativeBox:
    class_id: int
    cx: float
    cy: float
    width: float
    height: float

    def in_pixels(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        w, h = self.width * size[0], self.height * size[1]
        return self.cx * size[0] - w / 2, self.cy * size[1] - h / 2, w, h


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    labels: list[RelativeBox]


@dataclass
class Dataset:
    photos: list[LabelledPhoto] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_dataset(source: Path, class_count: int, missing_labels: str = "skip") -> Dataset:
    """source: a .data file or a folder of photos. missing_labels: 'skip' lists a photo
    without a label file and leaves it out; 'empty' counts it as a photo of nothing."""
    if source.is_dir():
        paths = photos_in([source])
        dataset = Dataset()
    elif source.is_file():
        paths, dataset = _listed_photos(source)
    else:
        raise DatasetError(f"{source}: no such .data file or folder")
    for path in paths:
        if not path.is_file():
            dataset.problems.append(f"{path}: photo not found; skipped")
            continue
        label_file = label_path(path)
        if label_file is None:
            if missing_labels == "empty":
                dataset.photos.append(LabelledPhoto(path, []))
            else:
                dataset.problems.append(
                    f"{path}: no label file ({path.with_suffix(LABEL_SUFFIX).name}); skipped "
                    "(--missing-labels empty counts such a photo as one of no objects)"
                )
            continue
        labels, problems = parse_labels(label_file, class_count)
        dataset.problems += problems
        dataset.photos.append(LabelledPhoto(path, labels))
    if not dataset.photos:
        raise DatasetError(f"{source}: no labelled photo to evaluate" + _first(dataset.problems))
    return dataset


def label_path(photo: Path) -> Path | None:
    beside = photo.with_suffix(LABEL_SUFFIX)
    if beside.is_file():
        return beside
    parts = list(photo.with_suffix(LABEL_SUFFIX).parts)
    for index in range(len(parts) - 1, -1, -1):  # the last images/ folder, as darknet replaces it
        if parts[index] in DARKNET_IMAGE_FOLDERS:
            candidate = Path(*parts[:index], "labels", *parts[index + 1 :])
            return candidate if candidate.is_file() else None
    return None


def parse_labels(path: Path, class_count: int) -> tuple[list[RelativeBox], list[str]]:
    labels, problems = [], []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return [], [f"{path}: cannot read ({exc.strerror}); its photo counts as no objects"]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        fields = line.split()
        try:
            if len(fields) != 5:
                raise ValueError
            class_id, numbers = int(fields[0]), [float(value) for value in fields[1:]]
        except ValueError:
            problems.append(f"{where}: expected 'class cx cy w h', got {line.strip()[:60]!r}; line skipped")
            continue
        if not 0 <= class_id < class_count:
            problems.append(f"{where}: class {class_id} is not one of the model's {class_count}; line skipped")
            continue
        cx, cy, w, h = numbers
        inside = all(math.isfinite(v) and 0 <= v <= 1 for v in numbers) and w > 0 and h > 0
        if not inside:
            problems.append(f"{where}: box {cx:g} {cy:g} {w:g} {h:g} is not inside 0-1; line skipped")
            continue
        labels.append(RelativeBox(class_id, cx, cy, w, h))
    return labels, problems


def _listed_photos(data_file: Path) -> tuple[list[Path], Dataset]:
    settings = {}
    for line in data_file.read_text(encoding="utf-8", errors="replace").splitlines():
        key, separator, value = line.partition("=")
        if separator and not key.strip().startswith("#"):
            settings[key.strip()] = value.strip()
    if not settings.get("valid"):
        raise DatasetError(f"{data_file}: no valid= line (the list of validation photos)")
    listing = resolve(settings["valid"], data_file.parent)
    if listing is None:
        raise DatasetError(f"{data_file}: valid={settings['valid']} not found, nor under {data_file.parent}")
    dataset = Dataset()
    paths = []
    for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            found = resolve(line.strip(), data_file.parent)
            paths.append(found or Path(line.strip()))
    return paths, dataset


def resolve(written: str, base: Path) -> Path | None:
    """A path as written on the training machine: as it is, or under `base` by its
    trailing parts (data/obj/1.jpg -> base/data/obj/1.jpg, base/obj/1.jpg, base/1.jpg)."""
    if Path(written).is_file():
        return Path(written)
    parts = (PureWindowsPath if "\\" in written else PurePosixPath)(written).parts
    parts = [part for part in parts if part not in ("/", "\\") and not part.endswith(":\\")]
    for start in range(len(parts)):
        candidate = base.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    return None


def _first(problems: list[str]) -> str:
    return f" (first problem: {problems[0]})" if problems else ""
