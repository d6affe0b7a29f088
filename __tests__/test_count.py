"""python -m app count (app/cli/count.py): the same pipeline over folders, no server."""

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime

import pytest
from PIL import Image
from support import DATA, ROOT, run_count
from support import run_count as count  # reads as the command it runs

from app.cli.count import count_photo
from app.cli.count_plot import by_date
from app.pipeline import PhotoResult
from app.vision.detection import DetectOptions
from app.vision.images import photos_in

EXIF_DATE = "2026:11:20 09:30:00"


def rows_of(text: str) -> dict[str, dict]:
    return {row["file"].rsplit("/", 1)[1]: row for row in csv.DictReader(io.StringIO(text))}


def dated_jpeg(path, source: str = "dog.jpg", date: str = EXIF_DATE) -> None:
    """A copy of a sample photo whose EXIF says when it was taken."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = date  # DateTimeOriginal, in the Exif IFD
    with Image.open(DATA / source) as photo:
        photo.save(path, exif=exif)
    with Image.open(path) as saved:
        assert saved.getexif().get_ifd(0x8769)[36867] == date  # it round-trips


def undated_jpeg(path, source: str = "dog.jpg") -> None:
    with Image.open(DATA / source) as photo:
        photo.save(path)  # Pillow writes no EXIF unless given one
    with Image.open(path) as saved:
        assert not saved.getexif().get_ifd(0x8769)


@pytest.mark.e2e
def test_a_folder_becomes_one_csv_row_per_photo(model_dir, tmp_path):
    photos = tmp_path / "drop-42"
    (photos / "day2").mkdir(parents=True)
    shutil.copy(DATA / "dog.jpg", photos)
    shutil.copy(DATA / "person.jpg", photos / "day2")
    (photos / "broken.jpg").write_bytes(b"half a jpeg")
    (photos / "notes.txt").write_text("not a photo, not listed")
    result = count(str(photos), "--annotate", str(tmp_path / "annotated"), model_dir=model_dir, status=1)
    rows = rows_of(result.stdout)
    assert set(rows) == {"dog.jpg", "person.jpg", "broken.jpg"}
    assert (rows["dog.jpg"]["width"], rows["dog.jpg"]["height"]) == ("768", "576")
    assert int(rows["dog.jpg"]["dog"]) == 1 and int(rows["person.jpg"]["person"]) == 1
    assert float(rows["dog.jpg"]["ms"]) > 0 and rows["dog.jpg"]["error"] == ""
    assert "not an image" in rows["broken.jpg"]["error"] and rows["broken.jpg"]["dog"] == ""
    pictures = sorted(p.relative_to(tmp_path / "annotated").as_posix() for p in (tmp_path / "annotated").rglob("*.jpg"))
    assert pictures == ["day2/person.annotated.jpg", "dog.annotated.jpg"]  # the input's folders, mirrored
    assert "counted 2 photos, 1 could not be read:" in result.stderr
    assert f"  {photos / 'broken.jpg'}: the data is not an image" in result.stderr  # the summary names it


@pytest.mark.e2e
def test_the_exit_status_says_whether_every_photo_was_counted(model_dir, tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    shutil.copy(DATA / "dog.jpg", good)
    for number in range(12):
        (bad / f"blank{number:02}.jpg").write_bytes(b"")
    assert count(str(good), model_dir=model_dir, status=0).stderr.endswith("counted 1 photos, 0 could not be read\n")
    failed = count(str(bad), model_dir=model_dir, status=1)  # every photo unreadable is a failure, not a success
    named = [line for line in failed.stderr.splitlines() if line.startswith("  ")]
    assert len(named) == 11 and named[0] == f"  {bad / 'blank00.jpg'}: the image is empty (0 bytes)"
    assert named[-1] == "  and 2 more (their rows carry the error)"
    assert len(rows_of(failed.stdout)) == 12


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("folder_holds", "said"),
    [
        (None, "count: no such file or folder: {tmp}/folder"),
        (
            [],
            "count: nothing to count: no photo (.bmp, .gif, .jfif, .jpe, .jpeg, .jpg, .mpo, .png, .tif, .tiff, .webp)"
            " in {tmp}/folder",
        ),
        (["notes.txt", "counts.csv"], "count: nothing to count: no photo"),
        (["x.annotated.jpg"], "count: nothing to count: no photo"),  # the count command's own pictures
    ],
    ids=["missing", "empty", "no-photos", "only-annotated-pictures"],
)
def test_nothing_to_count_is_status_3_in_one_line(model_dir, tmp_path, folder_holds, said):
    folder = tmp_path / "folder"
    if folder_holds is not None:
        folder.mkdir()
        for name in folder_holds:
            shutil.copy(DATA / "dog.jpg", folder / name)
    result = count(str(folder), model_dir=model_dir, status=3)
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stdout == ""
    assert result.stderr.startswith(said.format(tmp=tmp_path))


@pytest.mark.e2e
def test_bad_arguments_are_status_2_and_said_before_any_photo_is_counted(model_dir, tmp_path):
    photo = str(DATA / "dog.jpg")
    refused = count(photo, "--threshold", "1.5", model_dir=model_dir, status=2)
    assert "--threshold must be between 0 and 1" in refused.stderr
    nowhere = count(photo, "-o", "/nonexistent/dir/x.csv", model_dir=model_dir, status=2)
    assert nowhere.stderr == (
        "count: cannot write the output /nonexistent/dir/x.csv: No such file or directory; nothing counted\n"
    )
    (tmp_path / "taken").write_text("a file where the folder would go")
    blocked = count(photo, "--annotate", str(tmp_path / "taken" / "pictures"), model_dir=model_dir, status=2)
    assert blocked.stderr.startswith(f"count: cannot create the --annotate folder {tmp_path}/taken/pictures: ")
    assert len(blocked.stderr.splitlines()) == 1
    plot = count(photo, "--plot", str(tmp_path / "no" / "counts.png"), model_dir=model_dir, status=2)
    assert plot.stderr.startswith(f"count: cannot write the --plot file {tmp_path}/no/counts.png: ")


@pytest.mark.e2e
def test_a_model_that_cannot_be_loaded_is_status_4(tmp_path):
    result = count(str(DATA / "dog.jpg"), model_dir=tmp_path, status=4)
    assert result.stderr.startswith("cannot start: ") and len(result.stderr.splitlines()) == 1


@pytest.mark.e2e
def test_same_named_photos_keep_their_own_pictures_and_pictures_are_never_counted(model_dir, tmp_path):
    photos = tmp_path / "culture"
    (photos / "day1").mkdir(parents=True)
    (photos / "day2").mkdir()
    shutil.copy(DATA / "dog.jpg", photos / "day1" / "sample.jpg")
    shutil.copy(DATA / "person.jpg", photos / "day2" / "sample.jpg")
    annotated = photos / "annotated"  # inside the folder counted
    for _ in range(2):  # the second run must not count the first run's pictures
        result = count(str(photos), "--annotate", str(annotated), model_dir=model_dir, status=0)
        assert [row["file"] for row in csv.DictReader(io.StringIO(result.stdout))] == [
            f"{photos}/day1/sample.jpg",
            f"{photos}/day2/sample.jpg",
        ]
    with (
        Image.open(annotated / "day1" / "sample.annotated.jpg") as one,
        Image.open(annotated / "day2" / "sample.annotated.jpg") as other,
    ):
        assert one.size == (768, 576) and other.size == (640, 424)  # each its own photo's picture
    assert len(list(annotated.rglob("*"))) == 4

    # Photos named one by one go at the top; a second of the same name keeps its own picture.
    named = [str(photos / "day1" / "sample.jpg"), str(photos / "day2" / "sample.jpg")]
    count(*named, "--annotate", str(tmp_path / "one"), model_dir=model_dir, status=0)
    mirrored = sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*.jpg"))
    assert mirrored == ["day1/sample.annotated.jpg", "day2/sample.annotated.jpg"]  # under the folder they share
    count(str(photos / "day1" / "sample.jpg"), "--annotate", str(tmp_path / "single"), model_dir=model_dir, status=0)
    assert [p.name for p in (tmp_path / "single").iterdir()] == ["sample.annotated.jpg"]


@pytest.mark.e2e
def test_outputs_beside_or_above_the_photos_and_folders_named_twice(model_dir, tmp_path):
    photos = tmp_path / "culture"
    photos.mkdir()
    shutil.copy(DATA / "dog.jpg", photos / "a.jpg")
    # --annotate as the counted folder itself: its photos are still counted, its pictures never.
    for _ in range(2):
        result = count(str(photos), "--annotate", str(photos), model_dir=model_dir, status=0)
        assert [row["file"] for row in csv.DictReader(io.StringIO(result.stdout))] == [f"{photos}/a.jpg"]
    assert (photos / "a.annotated.jpg").is_file()
    # A folder named twice, or inside another named, is counted once.
    twice = count(str(photos), str(photos), str(photos / "a.jpg"), model_dir=model_dir, status=0)
    assert len(list(csv.DictReader(io.StringIO(twice.stdout)))) == 1
    # An output named as a photo to count is refused, not overwritten and then read.
    both = count(str(photos / "a.jpg"), "--plot", str(photos / "a.jpg"), model_dir=model_dir, status=2)
    assert "is to be counted and written to" in both.stderr
    # The -o and --plot files inside the counted folder are not photos on the next run.
    for _ in range(2):
        plotted = count(
            str(photos), "-o", str(photos / "c.csv"), "--plot", str(photos / "c.png"), model_dir=model_dir, status=0
        )
    assert len(list(csv.DictReader(io.StringIO((photos / "c.csv").read_text())))) == 1, plotted.stderr


@pytest.mark.e2e
def test_a_start_that_fails_leaves_an_earlier_output_as_it_was(tmp_path):
    earlier = tmp_path / "counts.csv"
    earlier.write_text("yesterday's counts\n")
    count(str(DATA / "dog.jpg"), "-o", str(earlier), "--plot", str(tmp_path / "c.png"), model_dir=tmp_path, status=4)
    assert earlier.read_text() == "yesterday's counts\n" and not (tmp_path / "c.png").exists()


@pytest.mark.e2e
def test_an_output_that_fills_up_stops_the_run_in_one_line(model_dir):
    full = count(str(DATA / "dog.jpg"), "-o", "/dev/full", model_dir=model_dir, status=1)  # always "disk full"
    assert full.stderr == "count: cannot write the output: No space left on device; stopped\n"


@pytest.mark.e2e
def test_a_picture_that_cannot_be_written_fails_its_photo_and_the_run_goes_on(model_dir, tmp_path):
    photos = tmp_path / "culture"
    (photos / "day1").mkdir(parents=True)
    (photos / "day2").mkdir()
    shutil.copy(DATA / "dog.jpg", photos / "day1" / "a.jpg")
    shutil.copy(DATA / "dog.jpg", photos / "day2" / "b.jpg")
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "day1").write_text("a file where day1's folder would go")
    result = count(str(photos), "--annotate", str(pictures), "--format", "coco", model_dir=model_dir, status=1)
    document = json.loads(result.stdout)  # whole: the run went on to the end
    assert [image["file_name"] for image in document["images"]] == [f"{photos}/day2/b.jpg"]
    assert "annotated picture" in result.stderr and "day1/a.jpg" in result.stderr


def test_annotated_pictures_and_skipped_folders_are_not_photos(tmp_path):
    (tmp_path / "out").mkdir()
    for name in ("a.jpg", "a.annotated.jpg", "B.Annotated.JPG", "out/c.jpg"):
        shutil.copy(DATA / "dog.jpg", tmp_path / name)
    assert photos_in([tmp_path], skip=[tmp_path / "out"]) == [tmp_path / "a.jpg"]
    assert photos_in([tmp_path / "a.annotated.jpg"]) == [tmp_path / "a.annotated.jpg"]  # named: the user means it


@pytest.mark.e2e
def test_rows_carry_total_threshold_model_and_date(model_dir, tmp_path):
    dated_jpeg(tmp_path / "exif.jpg")
    undated_jpeg(tmp_path / "plain.jpg")
    os.utime(tmp_path / "plain.jpg", (0, datetime(2026, 3, 4, 5, 6, 7).timestamp()))
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    result = count(str(tmp_path), "--threshold", "0.3", model_dir=model_dir, status=1)
    header = next(csv.reader(io.StringIO(result.stdout)))
    assert header[:5] == ["file", "date", "width", "height", "crop"]
    assert header[-7:] == ["total", "threshold", "model", "ms", "tiles_run", "tiles_skipped", "error"]
    rows = rows_of(result.stdout)
    model = hashlib.sha256((model_dir / "yolov3-tiny.weights").read_bytes()).hexdigest()[:12]
    assert rows["exif.jpg"]["date"] == "2026-11-20T09:30:00"  # the EXIF date, ISO 8601
    assert rows["plain.jpg"]["date"] == "2026-03-04T05:06:07"  # no EXIF: the file's time
    for name in ("exif.jpg", "plain.jpg"):
        row = rows[name]
        assert int(row["total"]) == sum(int(row[c]) for c in header[5:-7]) > 0
        assert (row["threshold"], row["model"]) == ("0.3", model)
    assert rows["broken.jpg"]["model"] == model and rows["broken.jpg"]["total"] == rows["broken.jpg"]["date"] == ""

    lines = count(str(tmp_path / "exif.jpg"), "--format", "jsonl", model_dir=model_dir, status=0).stdout.splitlines()
    (row,) = [json.loads(line) for line in lines]
    assert (row["date"], row["total"], row["threshold"], row["model"]) == (
        "2026-11-20T09:30:00",
        sum(row["counts"].values()),
        0.25,
        model,
    )


@pytest.mark.e2e
def test_the_long_format_is_a_row_per_photo_and_class(model_dir, tmp_path):
    shutil.copy(DATA / "dog.jpg", tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    wide = rows_of(count(str(tmp_path), model_dir=model_dir, status=1).stdout)
    result = count(str(tmp_path), "--format", "long", model_dir=model_dir, status=1)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["file", "date", "class", "count", "threshold", "model", "error"]
    broken = [row for row in rows if row["file"].endswith("broken.jpg")]
    assert len(broken) == 1 and "not an image" in broken[0]["error"] and broken[0]["class"] == ""
    dog = {row["class"]: int(row["count"]) for row in rows if row["file"].endswith("dog.jpg")}
    assert len(dog) == 80 and dog["dog"] == 1 and dog["zebra"] == 0  # every class, zeros included
    assert dog == {name: int(wide["dog.jpg"][name]) for name in dog}
    assert {row["date"] for row in rows if row["class"]} == {"2014-09-19T16:08:30"}


@pytest.mark.e2e
def test_progress_is_a_plain_line_per_photo_when_stderr_is_not_a_terminal(model_dir, tmp_path):
    for name in ("dog.jpg", "kite.jpg"):
        shutil.copy(DATA / name, tmp_path)
    (tmp_path / "zz.jpg").write_bytes(b"")
    result = count(str(tmp_path), "-o", str(tmp_path / "counts.csv"), model_dir=model_dir, status=1)
    assert "\r" not in result.stderr
    assert result.stderr.splitlines()[:3] == [
        f"counted 1/3 {tmp_path}/dog.jpg",
        f"counted 2/3 {tmp_path}/kite.jpg",
        f"failed 3/3 {tmp_path}/zz.jpg: the image is empty (0 bytes)",
    ]


@pytest.mark.e2e
def test_plot_draws_counts_by_date_or_by_photo(model_dir, tmp_path):
    dated, undated = tmp_path / "dated", tmp_path / "undated"
    dated.mkdir(), undated.mkdir()
    dated_jpeg(dated / "a.jpg", "dog.jpg", "2026:11:20 09:30:00")
    dated_jpeg(dated / "b.jpg", "person.jpg", "2026:11:22 10:00:00")
    for name in ("dog.jpg", "person.jpg"):
        undated_jpeg(undated / name, name)
        os.utime(undated / name, (0, 1_700_000_000))  # copied together: one time, no order
    for folder in (dated, undated):
        plot = tmp_path / f"{folder.name}.png"
        count(str(folder), "--plot", str(plot), model_dir=model_dir, status=0)
        assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(plot) as picture:
            assert picture.format == "PNG" and picture.size == (900, 500)


def test_the_plot_orders_photos_by_date_only_when_the_dates_order_them():
    def result(taken):
        return PhotoResult("x.jpg", 1, 1, (), {"dog": 1}, taken=taken)

    day1, day2 = datetime(2026, 11, 20), datetime(2026, 11, 22)
    assert by_date([result(day1), result(day2)])
    assert not by_date([result(day1), result(None)])
    assert not by_date([result(day1), result(day1)])


@pytest.mark.e2e
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


@pytest.mark.e2e  # runs python -m app count
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
    assert result.returncode == 1, result.stderr.decode(errors="replace")  # two photos failed
    rows = {row["file"].rsplit("/", 1)[1]: row for row in csv.DictReader(io.StringIO(output.read_text("utf-8")))}
    assert set(rows) == {"pipe.jpg", "caf\\xe9.jpg", "boom.jpg"}  # valid UTF-8, the byte shown as \xe9
    assert int(rows["caf\\xe9.jpg"]["dog"]) == 1 and rows["caf\\xe9.jpg"]["error"] == ""
    assert "not a regular file" in rows["pipe.jpg"]["error"]
    assert "damaged" in rows["boom.jpg"]["error"] and "decoder bug" in rows["boom.jpg"]["error"]
    assert b"counted 1 photos, 2 could not be read" in result.stderr


@pytest.mark.e2e  # runs python -m app count
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

    monkeypatch.setattr(detector.engine, "predict", broken)  # the engine itself, whatever calls it
    monkeypatch.setattr(detector.engine, "predict_many", broken)
    with pytest.raises(RuntimeError, match="engine crashed"):
        count_photo(DATA / "dog.jpg", detector, DetectOptions(), settings, auto_crop=False, annotated=False)


@pytest.mark.e2e
def test_count_auto_crop_goes_on_past_a_photo_thinner_than_2048_to_1(model_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (20_000, 8), (40, 130, 205)).save(photos / "thin.png")
    shutil.copy(DATA / "dog.jpg", photos / "dog.jpg")
    result = count(str(photos), "--auto-crop", model_dir=model_dir)
    assert set(rows_of(result.stdout)) == {"thin.png", "dog.jpg"} and "counted 2 photos" in result.stderr


@pytest.mark.e2e
def test_annotate_never_follows_a_symlink_planted_at_an_output_name(model_dir, tmp_path):
    photos = tmp_path / "photos"
    (photos / "day1").mkdir(parents=True)
    shutil.copy(DATA / "dog.jpg", photos / "a.jpg")
    shutil.copy(DATA / "dog.jpg", photos / "day1" / "b.jpg")
    shutil.copy(DATA / "dog.jpg", photos / "c.jpg")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "a.annotated.jpg").symlink_to(victim)
    (pictures / "day1").symlink_to(elsewhere)  # a folder on the way
    result = count(str(photos), "--annotate", str(pictures), model_dir=model_dir, status=1)
    assert victim.read_text() == "keep me" and list(elsewhere.iterdir()) == []
    assert "symbolic link, not followed" in result.stderr
    assert (pictures / "c.annotated.jpg").is_file() and not (pictures / "c.annotated.jpg").is_symlink()
    rows = rows_of(result.stdout)
    assert rows["c.jpg"]["error"] == "" and "symbolic link" in rows["a.jpg"]["error"]


def test_every_jpeg_name_a_camera_or_phone_writes_is_a_photo(tmp_path):
    # .jfif (Windows' save-as), .jpe, .mpo (a phone's 3D/multi-picture JPEG): one list for page, API and count.
    for name in ("a.jpg", "b.JPEG", "c.jfif", "d.jpe", "e.mpo", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [path.name for path in photos_in([tmp_path])] == ["a.jpg", "b.JPEG", "c.jfif", "d.jpe", "e.mpo"]
