"""A lab's day with the count command: a USB stick from a Mac, photos a folder per day."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import DATA, run_count

from app.vision.images import is_hidden, photos_in


def usb_stick(root: Path) -> Path:
    """Photos as macOS copies them: a `._name.jpg` of resource data beside each, and a
    hidden folder of thumbnails."""
    culture = root / "culture"
    for day, name in (("day1", "dog.jpg"), ("day2", "kite.jpg")):
        (culture / day).mkdir(parents=True)
        shutil.copy(DATA / name, culture / day / name)
        (culture / day / f"._{name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (culture / ".thumbnails").mkdir()
    shutil.copy(DATA / "dog.jpg", culture / ".thumbnails" / "dog.jpg")
    return culture


def test_hidden_files_and_folders_are_not_photos_of_a_folder(tmp_path):
    culture = usb_stick(tmp_path)
    hidden: list[Path] = []
    found = photos_in([culture], hidden=hidden)
    assert [p.relative_to(culture).as_posix() for p in found] == ["day1/dog.jpg", "day2/kite.jpg"]
    assert sorted(p.relative_to(culture).as_posix() for p in hidden) == [
        ".thumbnails/dog.jpg",
        "day1/._dog.jpg",
        "day2/._kite.jpg",
    ]
    assert not is_hidden(Path("day1/dog.jpg")) and is_hidden(Path("day1/._dog.jpg"))
    # Named by the lab itself, a file is counted whatever its name.
    assert photos_in([culture / "day1" / "._dog.jpg"]) == [culture / "day1" / "._dog.jpg"]


@pytest.mark.e2e
def test_count_skips_them_and_says_how_many_in_its_summary(model_dir, tmp_path):
    culture = usb_stick(tmp_path)
    output = tmp_path / "counts.csv"
    result = run_count(str(culture), "-o", str(output), "--tiling", "off", model_dir=model_dir)
    rows = output.read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == [str(culture / "day1/dog.jpg"), str(culture / "day2/kite.jpg")]
    assert result.stderr.strip().splitlines()[-1] == (
        "counted 2 photos, 0 could not be read, 3 hidden skipped (._ files and hidden folders)"
    )
