"""Which class a label line's number means. A YOLO label says `2 cx cy w h`; 2 is a line
of the export's own names file, and labelling tools number classes their own way (Label
Studio alphabetically, CVAT in its label order), rarely as the model's .names does. So
the export's names are read where it has them (classes.txt, obj.names, data.yaml's
`names:`, a .data's `names=`) and every label is mapped to the model's class of the same
name. A label of a class the model does not have is refused: it could only be counted
wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

NAMES_FILES = ("classes.txt", "obj.names", "data.yaml", "dataset.yaml")


class ClassNamesError(ValueError):
    """The export's names cannot be read, or name a class the model does not have."""


@dataclass(frozen=True)
class ExportClasses:
    """The export's class numbers mapped to the model's."""

    source: Path | None  # the names file read; None: none found, the numbers are the model's
    names: tuple[str, ...]  # the export's names, by its numbers
    to_model: dict[int, int]  # export number -> model class id, for names the model has
    unknown: dict[int, str]  # export number -> a name the model does not have

    @property
    def count(self) -> int:
        return len(self.names)

    def note(self, model_names: Sequence[str]) -> str | None:
        """One line when the numbering is not the model's: what was done about it."""
        if self.source is None:
            return None
        moved = sum(1 for number, model_id in self.to_model.items() if number != model_id)
        if not moved and not self.unknown and len(self.names) <= len(model_names):
            return None
        return (
            f"labels' classes read by name from {self.source} ({len(self.names)} names); "
            f"{moved} numbered differently from the model's .names were mapped to it"
        )


def model_numbering(model_names: Sequence[str]) -> ExportClasses:
    return ExportClasses(None, tuple(model_names), {i: i for i in range(len(model_names))}, {})


def find_names_file(source: Path, data_names: str | None = None) -> Path | None:
    """The export's names file: a .data's names= (already resolved), else one of
    NAMES_FILES in the folder given or the one above it (an export's images/ folder)."""
    if data_names:
        return Path(data_names)
    folder = source if source.is_dir() else source.parent
    for candidate_folder in (folder, folder.parent):
        for name in NAMES_FILES:
            if (candidate_folder / name).is_file():
                return candidate_folder / name
    return None


def read_names(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise ClassNamesError(f"{path}: cannot read the class names ({exc.strerror})") from None
    if path.suffix in (".yaml", ".yml"):
        return _yaml_names(path, text)
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return tuple(lines)


def _yaml_names(path: Path, text: str) -> tuple[str, ...]:
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ClassNamesError(f"{path}: not YAML that can be read ({str(exc).splitlines()[0]})") from None
    names = document.get("names") if isinstance(document, dict) else None
    if isinstance(names, dict) and all(isinstance(key, int) for key in names):
        # {0: Rotifer, 1: Dead}: numbers may come in any order, and none may be missing.
        if sorted(names) != list(range(len(names))):
            raise ClassNamesError(f"{path}: names: numbers must run 0..{len(names) - 1}")
        return tuple(str(names[number]).strip() for number in range(len(names)))
    if isinstance(names, list):
        return tuple(str(name).strip() for name in names)
    raise ClassNamesError(f"{path}: no names: list (or 0: name mapping) of the classes")


def map_by_name(names: Sequence[str], model_names: Sequence[str], source: Path) -> ExportClasses:
    """Same name, else the same once case and outer spaces are set aside."""
    exact = {name: index for index, name in enumerate(model_names)}
    loose = {}
    for index, name in enumerate(model_names):
        loose.setdefault(_key(name), index)
    to_model, unknown = {}, {}
    for number, name in enumerate(names):
        model_id = exact.get(name, loose.get(_key(name)))
        if model_id is None:
            unknown[number] = name
        else:
            to_model[number] = model_id
    return ExportClasses(source, tuple(names), to_model, unknown)


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()
