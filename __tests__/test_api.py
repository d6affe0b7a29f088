"""POST /invocations and GET /ping through the Flask app, on the real model."""

import base64
import io
import re
import sys
import threading
import warnings

import pytest
from fakes import fake_app
from PIL import Image
from support import ROOT, photo_bytes

DOG = photo_bytes("dog.jpg")
DOG_B64 = base64.b64encode(DOG).decode()


def found(stat: dict) -> dict:
    return {name: count for name, count in stat.items() if count}


def image_size(b64: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        assert image.format == "JPEG"
        return image.size


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_json()
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    error = response.get_json()["error"]
    assert set(error) >= {"code", "message"} and error["message"]
    return error


@pytest.fixture(scope="module")
def dog_stat(app):
    response = app.test_client().post("/invocations", json={"image": DOG_B64, "filename": "dog.jpg"})
    assert response.status_code == 200
    return response.get_json()["stat"]


def test_ping(fake_client):
    for path in ("/ping", "/ping/"):
        response = fake_client.get(path)
        assert response.status_code == 200 and response.get_json() == {"data": "pong!"}


def test_json_request_counts_dog_jpg(client):
    body = client.post("/invocations", json={"image": DOG_B64, "filename": "dog.jpg"}).get_json()
    assert set(body) == {"img", "stat"}
    stat = body["stat"]
    assert len(stat) == 80 and all(name.strip() for name in stat)
    assert stat["dog"] >= 1 and stat["bicycle"] >= 1 and stat["car"] + stat["truck"] >= 1
    assert image_size(body["img"]) == (768, 576)


@pytest.mark.parametrize(
    "send",
    [
        lambda c: c.post("/invocations", json={"image": "data:image/jpeg;base64," + DOG_B64}),
        lambda c: c.post("/invocations", json={"image": base64.encodebytes(DOG).decode().rstrip("=\n")}),
        lambda c: c.post("/invocations", json={"image": base64.urlsafe_b64encode(DOG).decode()}),
        lambda c: c.post(
            "/invocations", data={"image": (io.BytesIO(DOG), "dog.jpg"), "filename": "dog.jpg"}
        ),  # multipart
        lambda c: c.post("/invocations?filename=dog.jpg", data=DOG, content_type="image/jpeg"),
        lambda c: c.post("/invocations", data=DOG, content_type="application/x-image"),
    ],
    ids=["data-url", "mime-lines-no-padding", "urlsafe", "multipart", "raw-jpeg", "raw-x-image"],
)
def test_every_request_form_gives_the_same_stat(client, dog_stat, send):
    response = send(client)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["stat"] == dog_stat


def test_optional_parameters(client, dog_stat):
    body = client.post(
        "/invocations",
        json={"image": DOG_B64, "return_image": False, "detections": True, "classes": ["dog", "bicycle"]},
    ).get_json()
    assert "img" not in body
    assert found(body["stat"]) == {"dog": dog_stat["dog"], "bicycle": dog_stat["bicycle"]}
    assert len(body["stat"]) == 80
    assert {d["class"] for d in body["detections"]} == {"dog", "bicycle"}
    for detection in body["detections"]:
        assert set(detection) == {"class", "confidence", "box"}
        x, y, w, h = detection["box"]
        assert x >= 0 and y >= 0 and x + w <= 768 and y + h <= 576
        assert 0.25 < detection["confidence"] <= 1

    strict = client.post("/invocations?threshold=0.9&return_image=0", data=DOG, content_type="image/jpeg")
    assert found(strict.get_json()["stat"]) == {}
    loose = client.post("/invocations", data={"image": (io.BytesIO(DOG), "d.jpg"), "threshold": "0.1", "nms": "0.3"})
    assert sum(loose.get_json()["stat"].values()) > sum(dog_stat.values())
    comma = client.post("/invocations?classes=dog,%20car", data=DOG, content_type="image/jpeg").get_json()
    assert set(found(comma["stat"])) <= {"dog", "car"}


def test_exif_rotated_photo_comes_back_upright(client):
    photo = Image.open(io.BytesIO(DOG))
    sideways = photo.transpose(Image.Transpose.ROTATE_90)  # as a phone stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    buffer = io.BytesIO()
    sideways.save(buffer, "JPEG", quality=95, exif=exif)
    body = client.post("/invocations?detections=true", data=buffer.getvalue(), content_type="image/jpeg").get_json()
    assert image_size(body["img"]) == (768, 576)
    dog = next(d for d in body["detections"] if d["class"] == "dog")
    x, y, w, h = dog["box"]
    assert 128 < x + w / 2 < 315 and 220 < y + h / 2 < 540  # where the dog is when upright


def test_the_page_is_given_the_photo_types_count_takes_and_has_no_list_of_its_own(fake_client):
    from app.vision.images import PHOTO_SUFFIXES

    page = fake_client.get("/").data.decode()
    (accept,) = re.findall(r'id="photo"[^>]* accept="([^"]*)"', page)
    assert accept.split(",") == sorted(PHOTO_SUFFIXES) and "__PHOTO_SUFFIXES__" not in page
    for script in (ROOT / "app" / "http" / "static").glob("*.js"):
        assert not re.search(r"jpe\?g|\.tiff?\b|image/\*", script.read_text()), script.name


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (lambda c: c.post("/invocations", json={"filename": "x.jpg"}), 400, "missing_image"),
        (lambda c: c.post("/invocations", json={"image": "not base64!"}), 400, "invalid_base64"),
        (lambda c: c.post("/invocations", json={"image": 42}), 400, "invalid_base64"),
        (lambda c: c.post("/invocations", json={"image": "data:image/jpeg,abc"}), 400, "invalid_base64"),
        (
            lambda c: c.post("/invocations", json={"image": base64.b64encode(b"just text").decode()}),
            400,
            "invalid_image",
        ),
        (lambda c: c.post("/invocations", data=DOG[:5000], content_type="image/jpeg"), 400, "damaged_image"),
        (lambda c: c.post("/invocations", data=b"", content_type="image/png"), 400, "invalid_image"),
        (lambda c: c.post("/invocations", data=b"{not json", content_type="application/json"), 400, "invalid_json"),
        (lambda c: c.post("/invocations", json=[1, 2]), 400, "invalid_json"),
        (
            lambda c: c.post("/invocations", data={"filename": "x"}, content_type="multipart/form-data"),
            400,
            "missing_image",
        ),
        (lambda c: c.post("/invocations", data=DOG, content_type="text/plain"), 415, "unsupported_media_type"),
        (lambda c: c.post("/invocations", data=DOG), 415, "unsupported_media_type"),
        (lambda c: c.post("/invocations", json={"image": DOG_B64, "threshold": -1}), 400, "invalid_parameter"),
        (lambda c: c.post("/invocations", json={"image": DOG_B64, "threshold": 2}), 400, "invalid_parameter"),
        (lambda c: c.post("/invocations", json={"image": DOG_B64, "threshold": "abc"}), 400, "invalid_parameter"),
        (lambda c: c.post("/invocations", json={"image": DOG_B64, "threshold": True}), 400, "invalid_parameter"),
        (lambda c: c.post("/invocations", json={"image": DOG_B64, "nms": "nan"}), 400, "invalid_parameter"),
        (lambda c: c.post("/invocations", json={"image": DOG_B64, "classes": ["unicorn"]}), 400, "invalid_parameter"),
        (lambda c: c.post("/invocations", json={"image": DOG_B64, "classes": 3}), 400, "invalid_parameter"),
        (lambda c: c.post("/invocations", json={"image": DOG_B64, "detections": "maybe"}), 400, "invalid_parameter"),
        (lambda c: c.post("/invocations", json={"image": DOG_B64, "format": "xml"}), 400, "invalid_parameter"),
        (lambda c: c.post("/invocations?format=pdf", data=DOG, content_type="image/jpeg"), 400, "invalid_parameter"),
        (lambda c: c.get("/invocations"), 405, "method_not_allowed"),
        (lambda c: c.get("/nowhere"), 404, "not_found"),
    ],
)
def test_errors_are_documented_json(fake_client, send, status, code):
    assert error_of(send(fake_client), status)["code"] == code


def test_unknown_parameters_are_ignored(client, dog_stat):
    response = client.post("/invocations", json={"image": DOG_B64, "colour": "blue"})
    assert response.get_json()["stat"] == dog_stat


def test_an_unknown_format_is_refused_by_name(fake_client):
    for send in (
        lambda: fake_client.post("/invocations", json={"image": DOG_B64, "format": "xml"}),
        lambda: fake_client.post("/invocations", data={"image": (io.BytesIO(DOG), "d.jpg"), "format": "xml"}),
        lambda: fake_client.post("/invocations?format=xml", data=DOG, content_type="image/jpeg"),
    ):
        error = error_of(send(), 400)
        assert error["code"] == "invalid_parameter"
        assert error["message"] == "'format' must be one of json, jpeg, csv, jsonl, coco, long, got 'xml'"


def test_format_json_is_todays_answer(client, dog_stat):
    body = client.post("/invocations?format=json", json={"image": DOG_B64, "format": "JSON"}).get_json()
    assert set(body) == {"img", "stat"} and body["stat"] == dog_stat


def test_limits(tmp_path):
    small = fake_app(tmp_path, max_upload_mb=0.1, max_image_megapixels=0.3)
    client = small.test_client()
    assert error_of(client.post("/invocations", data=DOG, content_type="image/jpeg"), 413)["code"] == (
        "payload_too_large"
    )
    tiny_but_wide = io.BytesIO()
    Image.new("L", (800, 400)).save(tiny_but_wide, "PNG")  # 0.32 MP in a few hundred bytes
    response = client.post("/invocations", data=tiny_but_wide.getvalue(), content_type="image/png")
    assert error_of(response, 413)["code"] == "image_too_large"


def test_cors_and_request_id(fake_client):
    response = fake_client.post("/invocations", json={"image": DOG_B64}, headers={"X-Request-ID": "lab-42"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["X-Request-ID"] == "lab-42"
    preflight = fake_client.options(
        "/invocations",
        headers={
            "Origin": "http://lab.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key",  # what a browser asks before a JSON POST
        },
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"].lower() == "content-type, x-api-key"


def test_cors_origins_narrow_who_may_call(tmp_path):
    narrow = fake_app(tmp_path, cors_origins=("http://lab.example",)).test_client()
    allowed = narrow.get("/ping", headers={"Origin": "http://lab.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://lab.example"
    assert "Access-Control-Allow-Origin" not in narrow.get("/ping", headers={"Origin": "http://evil.example"}).headers


def test_nothing_is_written_to_disk_per_request(fake_client):
    writes = []
    watching = threading.Event()

    def audit(event, args):
        if watching.is_set() and event == "open" and isinstance(args[1], str) and set(args[1]) & set("wax+"):
            writes.append(args[0])

    sys.addaudithook(audit)  # hooks cannot be removed: this one only records while watching
    watching.set()
    try:
        for form in ({"json": {"image": DOG_B64}}, {"data": {"image": (io.BytesIO(DOG), "dog.jpg")}}):
            assert fake_client.post("/invocations", **form).status_code == 200
    finally:
        watching.clear()
    assert writes == []


def test_model_info(client, model_dir):
    info = client.get("/model").get_json()
    assert len(info["classes"]) == 80 and info["classes"][0] == "person"
    assert info["network"] == {"width": 416, "height": 416, "letter_box": False}
    assert (info["engine"], info["device"], info["precision"]) == ("onnxruntime", "cpu", "fp32")
    assert set(info["files"]) == {"yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names"}
    assert info["files"]["yolov3-tiny.weights"] == "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
    assert info["load_seconds"] > 0


def test_tiling_parameter(client, dog_stat):
    for mode in ("auto", "off", "Off"):
        response = client.post(f"/invocations?tiling={mode}&return_image=0", data=DOG, content_type="image/jpeg")
        assert response.get_json()["stat"] == dog_stat  # 768x576 on 416: auto does not tile
    response = client.post("/invocations", json={"image": DOG_B64, "tiling": "sometimes"})
    assert error_of(response, 400)["code"] == "invalid_parameter"


def test_the_web_page_is_served_whole_from_here(fake_client):
    response = fake_client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert b'id="photo"' in response.data
    for asset in ("static/page.js", "static/page.css"):
        assert f'"{asset}"'.encode() in response.data  # relative: the page works under a path prefix
    static = ROOT / "app" / "http" / "static"
    for asset in sorted(f"static/{path.name}" for path in static.iterdir() if path.suffix in (".js", ".css")):
        with fake_client.get(f"/{asset}") as served:  # a file answer: closed, or its file stays open
            assert served.status_code == 200
            assert asset.endswith(".css") or served.mimetype == "text/javascript"  # else no module runs
            # Nothing from the internet: the one URL is SVG's namespace name, never fetched.
            assert re.findall(rb"https?://[^\s\"')]+", served.data) in ([], [b"http://www.w3.org/2000/svg"])


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (lambda c: c.post("/invocations", data=b"[" * 100_000, content_type="application/json"), 400, "invalid_json"),
        (
            lambda c: c.post(
                "/invocations", data=b'{"image": "", "threshold": 1e400}', content_type="application/json"
            ),
            400,
            "invalid_parameter",
        ),
        (
            lambda c: c.post(
                "/invocations",
                data=b'{"image": "' + DOG_B64.encode() + b'", "threshold": ' + b"9" * 400 + b"}",
                content_type="application/json",
            ),
            400,
            "invalid_parameter",
        ),
    ],
    ids=["json-nested-too-deep", "json-infinite-number", "json-huge-integer"],
)
def test_pathological_json_is_a_400_not_a_500(fake_client, send, status, code):
    assert error_of(send(fake_client), status)["code"] == code


def test_a_photo_too_wide_for_jpeg_is_refused(fake_client):
    wide = io.BytesIO()
    Image.new("L", (70_000, 20)).save(wide, "PNG")
    assert error_of(fake_client.post("/invocations", data=wide.getvalue(), content_type="image/png"), 413)["code"] == (
        "image_too_large"
    )


def test_malformed_exif_is_ignored_not_a_500(fake_client):
    photo = Image.open(io.BytesIO(DOG))
    exif = Image.Exif()
    exif[0x0112] = (1, 2)  # an orientation of the wrong type
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # Pillow warns that it writes a malformed tag: the point
        warnings.simplefilter("ignore")
        photo.save(buffer, "JPEG", exif=exif)
    assert fake_client.post("/invocations", data=buffer.getvalue(), content_type="image/jpeg").status_code == 200


def test_an_error_names_what_was_wrong_without_echoing_it(fake_client):
    unknown = [f"not-a-class-{i}-" + "z" * 500 for i in range(5000)]
    response = fake_client.post("/invocations", json={"image": DOG_B64, "classes": unknown})
    message = error_of(response, 400)["message"]
    assert "and 4995 more" in message and len(response.data) < 2048
    nested = b'{"image": "", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    response = fake_client.post("/invocations", data=nested, content_type="application/json")
    assert error_of(response, 400)["code"] == "invalid_json" and "values" in error_of(response, 400)["message"]
    response = fake_client.post("/invocations", json={"image": DOG_B64, "nms": "5" * 100_000})
    assert error_of(response, 400)["code"] == "invalid_parameter" and len(response.data) < 1024
