"""python -m app count (app/cli/count.py): the same pipeline over folders, no server."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from support import DATA, ROOT, run_count

from app.cli.count import count_photo
from app.vision.detection import DetectOptions


def test_a_folder_becomes_one_csv_row_per_photo(model_dir, tmp_path):
    photos = tmp_path / "drop-42"
    (photos / "day2").mkdir(parents=True)
    shutil.copy(DATA / "dog.jpg", photos)
    shutil.copy(DATA / "person.jpg", photos / "day2")
    (photos / "broken.jpg").write_bytes(b"half a jpeg")
    (photos / "notes.txt").write_text("not a photo, not listed")
    result = run_count(str(photos), "--annotate", str(tmp_path / "annotated"), model_dir=model_dir)
    rows = {row["file"].rsplit("/", 1)[1]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert set(rows) == {"dog.jpg", "person.jpg", "broken.jpg"}
    assert (rows["dog.jpg"]["width"], rows["dog.jpg"]["height"]) == ("768", "576")
    assert int(rows["dog.jpg"]["dog"]) == 1 and int(rows["person.jpg"]["person"]) == 1
    assert float(rows["dog.jpg"]["ms"]) > 0 and rows["dog.jpg"]["error"] == ""
    assert "not an image" in rows["broken.jpg"]["error"] and rows["broken.jpg"]["dog"] == ""
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["dog.annotated.jpg", "person.annotated.jpg"]
    assert "counted 2 photos, 1 could not be read" in result.stderr


def test_json_lines_with_threshold_and_tiling(model_dir, tmp_path):
    output = tmp_path / "counts.jsonl"
    run_count(
        str(DATA / "kite.jpg"),
        "--format",
        "jsonl",
        "--threshold",
        "0.5",
        "--tiling",
        "off",
        "-o",
        str(output),
        model_dir=model_dir,
    )
    (row,) = [json.loads(line) for line in output.read_text().splitlines()]
    assert row["counts"]["kite"] == 1 and row["counts"]["person"] == 2  # 0.5 keeps the surest only


def test_a_name_that_is_not_utf8_a_fifo_and_a_decoder_fault_are_rows_and_the_run_goes_on(model_dir, tmp_path):
    photos = tmp_path / "card"
    photos.mkdir()
    latin1 = os.fsencode(photos) + b"/caf\xe9.jpg"  # what an old camera card's FAT names look like on Linux
    with open(latin1, "wb") as photo:
        photo.write((DATA / "dog.jpg").read_bytes())
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # named on the command line: reading it would wait forever for a writer
    (photos / "boom.jpg").write_bytes(b"BOOM: a decoder that raises what nobody expected")
    output = tmp_path / "counts.csv"
    # The count command itself, with the image library raising a RuntimeError on one photo.
    script = (
        "import sys, PIL.Image\n"
        "real = PIL.Image.open\n"
        "def open_image(stream, *args, **kwargs):\n"
        "    if stream.getvalue().startswith(b'BOOM'):\n"
        "        raise RuntimeError('decoder bug')\n"
        "    return real(stream, *args, **kwargs)\n"
        "PIL.Image.open = open_image\n"
        "from app.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "count", str(fifo), str(photos), "-o", str(output)],
        cwd=ROOT,
        env={"MODEL_DIR": str(model_dir), "PATH": "/usr/bin:/bin"},  # no LANG: the C locale
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    rows = {row["file"].rsplit("/", 1)[1]: row for row in csv.DictReader(io.StringIO(output.read_text("utf-8")))}
    assert set(rows) == {"pipe.jpg", "caf\\xe9.jpg", "boom.jpg"}  # valid UTF-8, the byte shown as \xe9
    assert int(rows["caf\\xe9.jpg"]["dog"]) == 1 and rows["caf\\xe9.jpg"]["error"] == ""
    assert "not a regular file" in rows["pipe.jpg"]["error"]
    assert "damaged" in rows["boom.jpg"]["error"] and "decoder bug" in rows["boom.jpg"]["error"]
    assert b"counted 1 photos, 2 could not be read" in result.stderr


def test_json_lines_carry_a_latin1_name_as_valid_utf8(model_dir, tmp_path):
    latin1 = os.fsencode(tmp_path) + b"/r\xf6tifer.jpg"
    with open(latin1, "wb") as photo:
        photo.write((DATA / "dog.jpg").read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "app", "count", str(tmp_path), "--format", "jsonl"],
        cwd=ROOT,
        env={"MODEL_DIR": str(model_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
        timeout=120,
    )
    (row,) = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    assert row["file"].endswith("/r\\xf6tifer.jpg") and row["counts"]["dog"] == 1


def test_an_engine_fault_stops_the_count_instead_of_passing_for_an_unreadable_photo(detector, settings, monkeypatch):
    # Only the photo's own faults are rows; a broken engine would make every photo one.
    def broken(*args, **kwargs):
        raise RuntimeError("engine crashed")

    monkeypatch.setattr(detector, "detect", broken)
    with pytest.raises(RuntimeError, match="engine crashed"):
        count_photo(DATA / "dog.jpg", detector, DetectOptions(), settings, auto_crop=False, annotated=False)
