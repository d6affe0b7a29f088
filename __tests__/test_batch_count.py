"""python -m app count: the same detector over folders, no server."""

import csv
import io
import json
import shutil
import subprocess
import sys

from support import DATA, ROOT


def run_count(*args: str, model_dir) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", "count", *args],
        cwd=ROOT,
        env={"MODEL_DIR": str(model_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )


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
