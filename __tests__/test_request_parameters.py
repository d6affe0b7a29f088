"""The table of request parameters: what it reads from each request form, and the 400s."""

import io
from datetime import datetime

import pytest
from flask import Flask

from app.http.errors import BadRequest
from app.http.parameters import PARAMETERS, read_parameters
from app.http.request_parsing import parse_invocation, parse_upload
from app.pipeline.render import MEDIA_TYPES
from app.vision.detection import DEFAULT_NMS, DEFAULT_THRESHOLD, DetectOptions
from app.vision.tiling import TILING_MODES

CLASSES = ("dog", "cat", "bicycle")
PHOTO = b"\xff\xd8 not decoded while parsing"


def parsed(path: str = "/invocations", parse=parse_invocation, **request):
    with Flask(__name__).test_request_context(path, method="POST", **request) as context:
        return parse(context.request, CLASSES)


def refusal(params: dict) -> str:
    with pytest.raises(BadRequest) as error:
        read_parameters(params, CLASSES)
    assert error.value.code == "invalid_parameter"
    return error.value.message


def test_nothing_given_is_the_defaults_of_their_owners():
    assert read_parameters({}, CLASSES) == {
        "threshold": DEFAULT_THRESHOLD,
        "nms": DEFAULT_NMS,
        "classes": None,
        "tiling": TILING_MODES[0],
        "return_image": True,
        "detections": False,
        "auto_crop": False,
        "format": None,
        "filename": None,
        "date": None,
    }
    raw = parsed(data=PHOTO, content_type="image/jpeg")
    assert raw.options == DetectOptions() and raw.format is None and raw.filename is None
    assert (raw.return_image, raw.include_detections, raw.auto_crop) == (True, False, False)


def test_every_parameter_is_read_and_unknown_ones_are_ignored():
    values = read_parameters(
        {
            "threshold": "0.5",
            "nms": 0.3,
            "classes": "dog, cat",
            "tiling": " OFF ",
            "return_image": "no",
            "detections": True,
            "auto_crop": "1",
            "format": "CSV",
            "filename": "drop.jpg",
            "date": "2026-11-20T09:30:00",
            "colour": "blue",
        },
        CLASSES,
    )
    assert values == {
        "threshold": 0.5,
        "nms": 0.3,
        "classes": frozenset({0, 1}),
        "tiling": "off",
        "return_image": False,
        "detections": True,
        "auto_crop": True,
        "format": "csv",
        "filename": "drop.jpg",
        "date": datetime(2026, 11, 20, 9, 30),
    }


@pytest.mark.parametrize(
    "request_form",
    [
        {"path": "/invocations?format=jsonl", "data": PHOTO, "content_type": "image/jpeg"},
        {"json": {"image": "AAAA", "format": "jsonl"}},
        {"data": {"image": (io.BytesIO(PHOTO), "d.jpg"), "format": "jsonl"}, "content_type": "multipart/form-data"},
    ],
    ids=["query", "json", "form"],
)
def test_format_is_read_from_query_json_and_form(request_form):
    assert parsed(**request_form).format == "jsonl"


def test_the_body_wins_over_the_query():
    invocation = parsed("/invocations?format=csv&threshold=0.9", json={"image": "AAAA", "format": "coco"})
    assert (invocation.format, invocation.options.threshold) == ("coco", 0.9)


def test_every_answer_format_is_accepted_and_an_empty_one_leaves_it_to_accept():
    for answer_format in MEDIA_TYPES:
        assert read_parameters({"format": answer_format}, CLASSES)["format"] == answer_format
    assert read_parameters({"format": ""}, CLASSES)["format"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"format": "xml"}, "'format' must be one of json, jpeg, csv, jsonl, coco, long, got 'xml'"),
        ({"format": 3}, "'format' must be one of json, jpeg, csv, jsonl, coco, long, got 3"),
        ({"tiling": "sometimes"}, "'tiling' must be one of auto, on, off, got 'sometimes'"),
        ({"threshold": "abc"}, "'threshold' must be a number between 0 and 1, got 'abc'"),
        ({"threshold": True}, "'threshold' must be a number between 0 and 1, got True"),
        ({"nms": 2}, "'nms' must be between 0 and 1, got 2"),
        ({"nms": "nan"}, "'nms' must be between 0 and 1, got 'nan'"),
        ({"detections": "maybe"}, "'detections' must be true or false, got 'maybe'"),
        ({"classes": 3}, "'classes' must be a list of class names or a comma-separated string"),
        ({"classes": ["unicorn", "dog"]}, "unknown class 'unicorn' in 'classes'; the model knows dog, cat, bicycle"),
        (
            {"date": "1732095000"},
            "'date' must be a date and time as 2024-05-01T09:30:00 (local, or with an offset such as +02:00), "
            "got '1732095000'",
        ),
        ({"date": "2026-13-20T09:30:00"}, "'date' must be a date and time as 2024-05-01T09:30:00"),
        ({"date": 3}, "'date' must be a date and time as 2024-05-01T09:30:00"),
    ],
)
def test_an_invalid_value_is_a_400_naming_the_parameter(params, message):
    assert refusal(params).startswith(message)


def test_a_date_is_read_local_or_with_its_offset_to_the_second():
    def read(text):
        return read_parameters({"date": text}, CLASSES)["date"].isoformat()

    assert read("2026-11-20 09:30:00.250") == "2026-11-20T09:30:00"
    assert read("2026-11-20T09:30:00+02:00") == "2026-11-20T09:30:00+02:00"
    assert read("2026-11-20T09:30:00Z") == "2026-11-20T09:30:00+00:00"


def test_a_photo_without_an_exif_date_takes_the_date_sent_and_one_with_keeps_its_own(fake_client):
    from PIL import Image
    from support import photo_bytes

    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2026:11:20 09:30:00"
    with Image.open(io.BytesIO(photo_bytes("giraffe.jpg"))) as photo:  # giraffe.jpg has no EXIF
        dated, undated = io.BytesIO(), io.BytesIO()
        photo.save(dated, "JPEG", exif=exif)
        photo.save(undated, "JPEG")
    for data, date in ((dated.getvalue(), "2026-11-20T09:30:00"), (undated.getvalue(), "2025-03-04T05:06:07")):
        form = {"image": (io.BytesIO(data), "p.jpg"), "date": "2025-03-04T05:06:07", "format": "csv"}
        answer = fake_client.post("/invocations", data=form, content_type="multipart/form-data")
        assert answer.get_data(as_text=True).splitlines()[1].split(",")[1] == date
    answer = fake_client.post("/invocations?format=jsonl", data=undated.getvalue(), content_type="image/jpeg")
    assert '"date": null' in answer.get_data(as_text=True)  # none sent, none in the photo: no date


def test_an_unknown_format_in_a_request_is_refused_by_name():
    with pytest.raises(BadRequest, match="'format' must be one of") as error:
        parsed("/invocations?format=xml", data=PHOTO, content_type="image/jpeg")
    assert error.value.code == "invalid_parameter"


def test_upload_reads_only_its_own_fields():
    invocation = parsed(
        "/upload?format=csv&threshold=0.9",
        parse=parse_upload,
        data={"file": (io.BytesIO(PHOTO), "d.jpg"), "auto_crop": "1", "format": "csv", "detections": "true"},
        content_type="multipart/form-data",
    )
    assert (invocation.filename, invocation.auto_crop, invocation.format) == ("d.jpg", True, None)
    assert invocation.options == DetectOptions() and not invocation.include_detections


def test_the_table_names_each_parameter_once():
    names = [parameter.name for parameter in PARAMETERS]
    assert len(names) == len(set(names)) and "image" not in names
