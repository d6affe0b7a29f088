"""One result, every rendering: the API and `python -m app count` answer in the same
formats from the same renderers, so a count or a box reads the same wherever it is read."""

import base64
import contextlib
import csv
import io
import json
import shutil
import subprocess
from datetime import datetime

import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from support import DATA, ROOT, run_count, starts_processes

from app.pipeline import PhotoFailure, PhotoLimits, photo, process_photo, render
from app.vision.detection import DetectOptions

DOG = (DATA / "dog.jpg").read_bytes()


def ask(client, headers=None, **params):
    return client.post("/invocations", data=DOG, content_type="image/jpeg", query_string=params, headers=headers)


def coco_from(document: dict) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it indexes
        coco = COCO()
        coco.dataset = document
        coco.createIndex()
    return coco


def test_the_api_gives_every_format_of_one_photo_and_they_agree(client):
    answer = ask(client, detections="true", filename="dog.jpg").get_json()
    found = {name: count for name, count in answer["stat"].items() if count}
    assert found["dog"] == found["bicycle"] == 1

    table = ask(client, format="csv", filename="dog.jpg")
    assert table.mimetype == "text/csv"
    header, row = csv.reader(io.StringIO(table.get_data(as_text=True)))
    classes = list(answer["stat"])
    tail = ["total", "threshold", "model", "ms", "tiles_run", "tiles_skipped", "error"]
    assert header == ["file", "date", "width", "height", "crop", *classes, *tail]
    assert row[:4] == ["dog.jpg", "2014-09-19T16:08:30", "768", "576"]  # dog.jpg's EXIF date
    assert dict(zip(classes, map(int, row[5:-7]), strict=True)) == answer["stat"]
    assert row[-7:-5] == [str(sum(answer["stat"].values())), "0.25"]  # total, threshold
    assert len(row[-5]) == 12 and row[-5] == client.get("/model").get_json()["files"]["yolov3-tiny.weights"][:12]
    assert row[-3:] == ["0", "0", ""]  # dog.jpg is not tiled: no tile run or skipped, no error

    long_rows = list(csv.DictReader(io.StringIO(ask(client, format="long").get_data(as_text=True))))
    assert {row["class"]: int(row["count"]) for row in long_rows} == answer["stat"]

    (line,) = ask(client, format="jsonl", detections="1").get_data(as_text=True).splitlines()
    assert json.loads(line)["counts"] == answer["stat"]
    assert json.loads(line)["detections"] == answer["detections"]  # same fields, same numbers

    coco = coco_from(ask(client, format="coco").get_json())
    assert [coco.cats[a["category_id"]]["name"] for a in coco.dataset["annotations"]] == [
        d["class"] for d in answer["detections"]
    ]
    assert [a["bbox"] for a in coco.dataset["annotations"]] == [d["box"] for d in answer["detections"]]

    picture = ask(client, format="jpeg")
    assert picture.mimetype == "image/jpeg" and json.loads(picture.headers["X-Stat"]) == found


@pytest.mark.parametrize(
    ("accept", "media"),
    [("text/csv", "text/csv"), ("application/x-ndjson", "application/x-ndjson"), ("image/*", "image/jpeg")],
)
def test_the_accept_header_chooses_the_format_when_the_request_does_not(fake_client, accept, media):
    assert ask(fake_client, headers={"Accept": accept}).mimetype == media
    assert ask(fake_client, headers={"Accept": accept}, format="json").mimetype == "application/json"  # format wins


def test_accepting_text_csv_gives_the_table_of_a_row_per_photo_not_the_long_one(fake_client):
    header = ask(fake_client, headers={"Accept": "text/csv"}).get_data(as_text=True).splitlines()[0]
    assert header.startswith("file,date,width,height,crop,")
    assert ask(fake_client, format="long").get_data(as_text=True).startswith("file,date,class,count,")


def test_the_api_gives_the_exif_date_or_none_the_file_has_no_time_there(fake_client):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2026:11:20 09:30:00"
    with Image.open(io.BytesIO(DOG)) as photo:
        dated, undated = io.BytesIO(), io.BytesIO()
        photo.save(dated, "JPEG", exif=exif)
        photo.save(undated, "JPEG")
    for data, date in ((dated.getvalue(), "2026-11-20T09:30:00"), (undated.getvalue(), None)):
        answer = fake_client.post(
            "/invocations", data=data, content_type="image/jpeg", query_string={"format": "jsonl"}
        )
        assert json.loads(answer.get_data(as_text=True))["date"] == date


def test_a_format_that_makes_no_picture_spends_no_time_drawing(fake_client, monkeypatch):
    def no_drawing(*args, **kwargs):
        raise AssertionError("drew a picture nobody asked for")

    monkeypatch.setattr(photo, "annotated_jpeg", no_drawing)
    for answer_format in ("csv", "long", "jsonl", "coco"):
        assert ask(fake_client, format=answer_format).status_code == 200
    assert "img" not in ask(fake_client, return_image="false").get_json()
    assert ask(fake_client).status_code == 500  # the default JSON does draw: the patch is in the path


def test_an_accept_with_parameters_and_a_format_over_an_accept_it_cannot_meet(fake_client):
    assert ask(fake_client, headers={"Accept": "text/csv; charset=utf-8"}).mimetype == "text/csv"
    assert ask(fake_client, headers={"Accept": "application/xml"}).status_code == 406
    # format= in a JSON body is read with the body, so the Accept header alone does not refuse it.
    answer = fake_client.post(
        "/invocations",
        json={"image": base64.b64encode(DOG).decode(), "format": "jsonl"},
        headers={"Accept": "application/xml"},
    )
    assert answer.status_code == 200 and answer.mimetype == "application/x-ndjson"


@pytest.mark.e2e
def test_count_gives_the_boxes_and_rows_the_api_gives(client, model_dir, tmp_path):
    shutil.copy(DATA / "dog.jpg", tmp_path)
    answer = ask(client, detections="true").get_json()
    (line,) = run_count(str(tmp_path), "--format", "jsonl", "--detections", model_dir=model_dir).stdout.splitlines()
    assert json.loads(line)["detections"] == answer["detections"]
    api_row = next(csv.DictReader(io.StringIO(ask(client, format="csv").get_data(as_text=True))))
    cli_row = next(csv.DictReader(io.StringIO(run_count(str(tmp_path), model_dir=model_dir).stdout)))
    for varying in ("file", "ms"):
        del api_row[varying], cli_row[varying]
    assert cli_row == api_row


@pytest.mark.e2e
def test_count_writes_one_coco_dataset_that_pycocotools_evaluates(model_dir, tmp_path):
    for name in ("dog.jpg", "horses.jpg", "person.jpg"):
        shutil.copy(DATA / name, tmp_path)
    (tmp_path / "notes.jpg").write_text("not a photo")  # in the CSV's error rows, not in COCO
    counted = run_count(str(tmp_path), "--format", "coco", model_dir=model_dir, status=1)  # notes.jpg failed
    document = json.loads(counted.stdout)
    truth = coco_from(document)
    assert sorted(image["file_name"].rsplit("/", 1)[1] for image in document["images"]) == [
        "dog.jpg",
        "horses.jpg",
        "person.jpg",
    ]
    assert len(truth.cats) == 80 and truth.cats[17]["name"] == "dog"  # .names line 17, counted from 1
    # Held against itself as ground truth, every box is found: the ids and boxes hang together.
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(truth, truth.loadRes(document["annotations"]), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP at IoU 0.5


@pytest.mark.e2e
def test_detections_go_with_json_lines_only(model_dir):
    refused = run_count(str(DATA / "dog.jpg"), "--detections", model_dir=model_dir, status=2)
    assert "--detections goes with --format jsonl" in refused.stderr


def test_a_failed_photo_renders_as_an_error_row_in_csv_and_json_lines():
    failure = PhotoFailure("bad.jpg", "the image is empty (0 bytes)")
    table = render.CsvDocument(("dog", "cat"))
    cells = ["bad.jpg", *[""] * 12, failure.error]  # no date, size, counts, total, ms, tiles...
    assert list(csv.reader(io.StringIO(table.photo(failure)))) == [cells]
    assert json.loads(render.JsonLinesDocument(("dog", "cat")).photo(failure))["error"] == failure.error
    long_table = render.LongCsvDocument(("dog", "cat"), model="0123456789ab")
    assert list(csv.reader(io.StringIO(long_table.photo(failure)))) == [
        ["bad.jpg", "", "", "", "", "0123456789ab", failure.error]
    ]


def test_the_pipeline_reads_the_date_from_the_photos_exif_and_keeps_the_threshold(detector):
    def taken(kind: str, exif: Image.Exif):
        encoded = io.BytesIO()
        with Image.open(io.BytesIO(DOG)) as image:
            image.save(encoded, kind, exif=exif)
        result = process_photo(encoded.getvalue(), detector, DetectOptions(threshold=0.4), PhotoLimits(10**8))
        assert result.threshold == 0.4 and result.total == sum(result.counts.values())
        return result.taken

    exif = Image.Exif()
    exif[0x010F] = "Scope cam"  # Pillow writes a PNG's EXIF only with a tag in the main IFD
    exif.get_ifd(0x8769)[36867] = "2026:11:20 09:30:00\x00"  # DateTimeOriginal, as cameras pad it
    for kind in ("JPEG", "PNG", "WEBP"):
        assert taken(kind, exif) == datetime(2026, 11, 20, 9, 30), kind
    tiff = Image.Exif()
    tiff[0x0132] = "2026:11:21 08:00:00"  # DateTime of the main IFD: a microscope camera's TIFF
    assert taken("TIFF", tiff) == datetime(2026, 11, 21, 8, 0)
    unset = Image.Exif()
    unset.get_ifd(0x8769)[36867] = "0000:00:00 00:00:00"  # a camera whose clock was never set
    assert taken("JPEG", unset) is None


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x")', "+1-2", "-cmd", "@SUM(A1)", " =1+2"])
def test_a_file_name_a_spreadsheet_would_run_is_written_as_text(name):
    failure = PhotoFailure(name, "the image is empty (0 bytes)")
    for document in (render.CsvDocument(("dog",)), render.LongCsvDocument(("dog",))):
        (row,) = csv.reader(io.StringIO(document.photo(failure)))
        assert row[0] == "'" + name


# Where the decimal mark is a comma (Excel in German or French) `;` separates cells, and
# some importers ignore quotes: each part after `,` or `;` is a cell of its own there.
# Controls and bidi overrides (a name that shows as another) are removed.
HOSTILE_CELLS = [
    ("x;=1+2;.jpg", "x;'=1+2;.jpg"),
    ('x,=HYPERLINK("http://evil");y.jpg', 'x,\'=HYPERLINK("http://evil");y.jpg'),
    ("a;@SUM(A1),b;-cmd", "a;'@SUM(A1),b;'-cmd"),
    ("x; +1-2.jpg", "x;' +1-2.jpg"),
    ("x\t=1+2.jpg", "x=1+2.jpg"),  # the tab removed: no cell starts at =
    ("\t=1+2", "'=1+2"),
    ("x\x00;\x00=1+2.jpg", "x;'=1+2.jpg"),  # NUL before = does not hide it
    ("photo\u202egpj.exe", "photogpj.exe"),  # shown as photoexe.jpg, with the override
    ("\u2066a\u2069\u202ab\u202c\x7fc\x9b\r\nd", "abcd"),
    ("-0.5;-3;+2e5;.5", "-0.5;-3;+2e5;.5"),  # numbers stay numbers
    ("day1/dog.jpg", "day1/dog.jpg"),
]


@pytest.mark.parametrize(("cell", "written"), HOSTILE_CELLS)
def test_every_part_of_a_cell_a_spreadsheet_would_run_is_text_and_controls_are_removed(cell, written):
    assert render.spreadsheet_safe(cell) == written
    failure = PhotoFailure(cell, f"{cell}: the image is empty (0 bytes)")
    (head,) = csv.reader(io.StringIO(render.CsvDocument((cell,)).head()))
    assert written in head  # a class name from the .names file too
    for document in (render.CsvDocument((cell,)), render.LongCsvDocument((cell,))):
        (row,) = csv.reader(io.StringIO(document.photo(failure)))
        assert row[0] == written and row[-1] == f"{written}: the image is empty (0 bytes)"


def test_the_api_csv_neutralises_a_formula_after_a_semicolon_and_drops_nul_and_overrides(fake_client):
    hostile = "x;=1+2;\x00\u202e.jpg"
    for form in ("csv", "long"):
        response = ask(fake_client, format=form, filename=hostile)
        text = response.get_data(as_text=True)
        assert "\x00" not in text and "\u202e" not in text and ";=" not in text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows and {row["file"] for row in rows} == {"x;'=1+2;.jpg"}


def test_the_count_command_writes_a_hostile_file_name_as_text(model_dir, tmp_path, monkeypatch, capsys):
    from app.cli import main

    shutil.copy(DATA / "dog.jpg", tmp_path / "x;=1+2;\u202e.jpg")
    monkeypatch.setenv("MODEL_DIR", str(model_dir))
    assert main(["count", str(tmp_path)]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["file"] == f"{tmp_path}/x;'=1+2;.jpg" and row["dog"] == "1"


NODE = shutil.which("node")


@pytest.mark.e2e
@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_web_pages_csv_fields_are_the_apis(tmp_path):
    """static/csv.js, which the page's Download CSV writes with, field for field as
    render.py writes them (Chromium runs the page itself in test_web_page.py)."""
    starts_processes("node")
    cells = [cell for cell, _ in HOSTILE_CELLS] + ['say "hi", =1', "", "0.25", "a\r\nb,c", -3, 0.25, None]
    module = (ROOT / "app" / "http" / "static" / "csv.js").as_uri()
    script = tmp_path / "fields.mjs"
    script.write_text(
        f"import {{ csvField }} from {json.dumps(module)};\n"
        f"process.stdout.write({json.dumps(cells)}.map((value) => csvField(value)).join(',') + '\\r\\n');\n"
    )
    result = subprocess.run([NODE, str(script)], capture_output=True, timeout=30)  # bytes: \r\n as written
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == render._csv_line(["" if cell is None else cell for cell in cells])


def test_a_number_stays_a_number_and_the_api_csv_is_spreadsheet_safe(client):
    assert render.spreadsheet_safe("-0.5") == "-0.5" and render.spreadsheet_safe(-3) == -3
    response = client.post(
        "/invocations", data=DOG, content_type="image/jpeg", query_string={"format": "csv", "filename": "=1+2.jpg"}
    )
    (row,) = csv.DictReader(io.StringIO(response.get_data(as_text=True)))
    assert row["file"] == "'=1+2.jpg"
