"""Labelled photos in darknet's own layout: a `.data` file whose `valid=` names a list
of photos, or a folder of photos; a YOLO `.txt` beside each photo, one object a line,
`class cx cy w h` relative to the photo (darknet also looks in a `labels/` folder next
to `images/` or `JPEGImages/`).

Paths in a `.data` or a list come from the machine the model was trained on: one that
does not exist here is looked up under the `.data`'s folder by its trailing parts.
Bad data is a problem line and the run goes on: the line, the photo, or nothing is
skipped, never the whole evaluation. Labels of a class the model does not have are left
out of every number, with a line that names the class and how many; only when no label
at all is left is that the end. Photos that cannot be found (listed in a `.data`, or a
label file with no photo: an export may drop a photo whose name is not plain ASCII) are
named together in one line.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath, PureWindowsPath

from app.vision.images import photos_in

from .class_names import (
    NAMES_FILES,
    ClassNamesError,
    ExportClasses,
    find_names_file,
    map_by_name,
    model_numbering,
    read_names,
)

LABEL_SUFFIX = ".txt"
DARKNET_IMAGE_FOLDERS = ("images", "JPEGImages")
LABEL_FOLDER = "labels"
NAMED_IN_A_LINE = 10  # missing photos named in their one line; the rest counted


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
    notes: list[str] = field(default_factory=list)  # what was read how, not a problem
    # Labels left out for a class the model does not have: name -> how many.
    unknown_labels: dict[str, int] = field(default_factory=dict)


def read_dataset(source: Path, model_names: Sequence[str], missing_labels: str = "skip") -> Dataset:
    """source: a .data file or a folder of photos. missing_labels: 'skip' lists a photo
    without a label file and leaves it out; 'empty' counts it as a photo of nothing.
    Labels come out numbered as the model's classes (class_names.py)."""
    data_names = None
    if source.is_dir():
        paths = photos_in([source])
        dataset = Dataset()
    elif source.is_file():
        paths, dataset, data_names = _listed_photos(source)
    else:
        raise DatasetError(f"{source}: no such .data file or folder")
    classes = _export_classes(source, data_names, model_names, dataset)
    unknown_used: Counter[int] = Counter()
    missing, used_label_files = [], set()
    for path in paths:
        if not path.is_file():
            missing.append(path)
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
        used_label_files.add(label_file.resolve())
        labels, problems = parse_labels(label_file, classes.count, _numbered_by(classes))
        dataset.problems += problems
        unknown_used.update(label.class_id for label in labels if label.class_id in classes.unknown)
        labels = [
            replace(label, class_id=classes.to_model[label.class_id])
            for label in labels
            if label.class_id in classes.to_model
        ]
        dataset.photos.append(LabelledPhoto(path, labels))
    if missing:
        dataset.problems.append(f"{_photos(len(missing))} not found, skipped: {_named(missing)}")
    if source.is_dir():
        orphans = [path for path in _label_files(source) if path.resolve() not in used_label_files]
        if orphans:
            dataset.problems.append(
                f"{_label_files_count(len(orphans))} without a photo, not evaluated (an export can leave out "
                f"a photo whose name is not plain ASCII: copy it in beside the others): {_named(orphans, source)}"
            )
    _unknown_classes(dataset, classes, unknown_used, model_names)
    if not dataset.photos:
        raise DatasetError(f"{source}: no labelled photo to evaluate" + _first(dataset.problems))
    return dataset


def _unknown_classes(dataset: Dataset, classes: ExportClasses, used: Counter[int], model_names: Sequence[str]) -> None:
    """Labels of classes the model does not have: left out, in one line. None left at all
    (the export's names and the model's disagree throughout): nothing to evaluate."""
    unused = [name for number, name in classes.unknown.items() if number not in used]
    if unused:
        dataset.notes.append(
            f"{classes.source} names classes the model does not have, on no label: {', '.join(unused)}"
        )
    if not used:
        return
    model = f"({', '.join(model_names[:8])}{'...' if len(model_names) > 8 else ''})"
    dataset.unknown_labels = {classes.unknown[number]: count for number, count in used.most_common()}
    if not any(photo.labels for photo in dataset.photos):
        number, count = used.most_common(1)[0]
        raise DatasetError(
            f"{classes.source}: class {classes.unknown[number]!r} ({count} labels) is not a class of the model "
            f"{model}, and no label is of one that is: rename it in the export or the model's .names so the "
            "two agree"
        )
    left_out = ", ".join(f"{name!r} ({count})" for name, count in dataset.unknown_labels.items())
    dataset.problems.append(
        f"{classes.source}: labels of classes the model does not have are left out of every number: {left_out}; "
        f"the model's classes are {model} (rename one in the export or the .names if it is the same class)"
    )


def _label_files(folder: Path) -> list[Path]:
    """Label files under a folder (and in the labels/ beside an images/ folder): .txt
    files in a labels/ folder, or whose every line reads as a label; names files aside."""
    roots = [folder]
    if folder.name in DARKNET_IMAGE_FOLDERS and (folder.parent / LABEL_FOLDER).is_dir():
        roots.append(folder.parent / LABEL_FOLDER)
    found = []
    for root in roots:
        for path in sorted(root.rglob(f"*{LABEL_SUFFIX}")):
            relative = path.relative_to(root)
            if path.name in NAMES_FILES or any(part.startswith(".") for part in relative.parts):
                continue
            if LABEL_FOLDER in path.parent.relative_to(root.parent).parts or _reads_as_labels(path):
                found.append(path)
    return found


def _reads_as_labels(path: Path) -> bool:
    try:
        lines = [line.split() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return False
    lines = [fields for fields in lines if fields]
    return bool(lines) and all(len(fields) == 5 and fields[0].isdigit() for fields in lines)


def _photos(count: int) -> str:
    return f"{count} photo{'s' if count != 1 else ''}"


def _label_files_count(count: int) -> str:
    return f"{count} label file{'s' if count != 1 else ''}"


def _named(paths: list[Path], under: Path | None = None) -> str:
    shown = [os.path.relpath(path, under.parent) if under else str(path) for path in paths[:NAMED_IN_A_LINE]]
    more = len(paths) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


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


def parse_labels(path: Path, class_count: int, numbered_by: str = "the model's") -> tuple[list[RelativeBox], list[str]]:
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
            problems.append(f"{where}: class {class_id} is not one of {numbered_by} {class_count}; line skipped")
            continue
        cx, cy, w, h = numbers
        inside = all(math.isfinite(v) and 0 <= v <= 1 for v in numbers) and w > 0 and h > 0
        if not inside:
            problems.append(f"{where}: box {cx:g} {cy:g} {w:g} {h:g} is not inside 0-1; line skipped")
            continue
        labels.append(RelativeBox(class_id, cx, cy, w, h))
    return labels, problems


def _export_classes(
    source: Path, data_names: str | None, model_names: Sequence[str], dataset: Dataset
) -> ExportClasses:
    """data_names: a .data's names= as written, where it has one."""
    found = resolve(data_names, source.parent) if data_names else None
    names_file = find_names_file(source, str(found) if found else None)
    if names_file is None:
        if data_names:
            dataset.notes.append(
                f"{source}: names={data_names} not found here: labels taken as numbered by the model's .names"
            )
        return model_numbering(model_names)
    try:
        classes = map_by_name(read_names(names_file), model_names, names_file)
    except ClassNamesError as exc:
        raise DatasetError(str(exc)) from None
    if note := classes.note(model_names):
        dataset.notes.append(note)
    return classes


def _numbered_by(classes: ExportClasses) -> str:
    return "the model's" if classes.source is None else f"the names in {classes.source.name}:"


def _listed_photos(data_file: Path) -> tuple[list[Path], Dataset, str | None]:
    """The photos a .data lists, and its names= as written."""
    settings = {}
    for line in data_file.read_text(encoding="utf-8", errors="replace").splitlines():
        key, separator, value = line.partition("=")
        if separator and not key.strip().startswith("#"):
            settings[key.strip()] = value.strip()
    dataset = Dataset()
    listed = "valid"
    if not settings.get("valid"):
        if not settings.get("train"):
            raise DatasetError(f"{data_file}: no valid= line (the list of validation photos)")
        # CVAT's YOLO 1.1 export writes train= only: the photos a lab labelled to check the model.
        listed = "train"
        dataset.notes.append(
            f"{data_file} has no valid= line: evaluating the photos of its train= list "
            "(photos the model was trained on measure it too kindly)"
        )
    listing = resolve(settings[listed], data_file.parent)
    if listing is None:
        raise DatasetError(f"{data_file}: {listed}={settings[listed]} not found, nor under {data_file.parent}")
    names = settings.get("names") or None
    paths = []
    for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            found = resolve(line.strip(), data_file.parent)
            paths.append(found or Path(line.strip()))
    return paths, dataset, names


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
