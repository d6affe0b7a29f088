"""scripts/cvat_function.py, CVAT's auto-annotation function, called as CVAT's SDK calls
it (create(**parameters), then detect(context, image) per frame) with a context of our
own, against the real service on 127.0.0.1 (in this process, over real HTTP)."""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass

import pytest
from PIL import Image
from support import ROOT, photo_bytes, photo_path
from werkzeug.serving import make_server

from app.http.factory import create_app
from app.settings import Settings

COCO = (ROOT / "aimodel" / "coco.names").read_text().splitlines()


def load_function_file():
    """As `cvat-cli task auto-annotate --function-file` loads it: a module from a path."""
    spec = importlib.util.spec_from_file_location("cvat_function", ROOT / "scripts" / "cvat_function.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeContext:
    """What CVAT's driver hands detect(): the frame's name and the --conf-threshold."""

    frame_name: str
    conf_threshold: float | None = None
    conv_mask_to_poly: bool = False


@pytest.fixture(scope="module")
def service_url(model_dir):
    app = create_app(Settings(model_dir=model_dir, engine_threads=2, api_keys=("lab-key",)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", app.test_client()
    server.shutdown()


@pytest.fixture(scope="module")
def function_file():
    return load_function_file()


def api_detections(client, name: str, **query) -> list[dict]:
    answer = client.post(
        "/invocations",
        data=photo_bytes(name),
        headers={"Content-Type": "image/jpeg", "X-API-Key": "lab-key"},
        query_string={"detections": "true", "return_image": "false", **query},
    )
    return answer.json["detections"]


def test_detect_gives_a_rectangle_per_box_the_api_finds_labelled_by_the_models_class(service_url, function_file):
    url, client = service_url
    function = function_file.create(url=url, api_key="lab-key")
    assert [label.name for label in function.spec.labels] == COCO
    assert [label.id for label in function.spec.labels] == list(range(len(COCO)))
    with Image.open(photo_path("dog.jpg")) as image:
        shapes = function.detect(FakeContext("dog.jpg"), image.convert("RGB"))
    wanted = api_detections(client, "dog.jpg")
    assert [shape.label_id for shape in shapes] == [COCO.index(d["class"]) for d in wanted]
    for shape, detection in zip(shapes, wanted, strict=True):
        x, y, w, h = detection["box"]
        assert shape.type.value == "rectangle" and shape.frame == 0
        assert shape.points == pytest.approx([x, y, x + w, y + h], abs=0.2)  # PNG pixels, the same as the JPEG's


def test_cvats_confidence_threshold_is_the_services_threshold(service_url, function_file):
    url, client = service_url
    function = function_file.create(url=url, api_key="lab-key")
    with Image.open(photo_path("horses.jpg")) as image:
        shapes = function.detect(FakeContext("horses.jpg", conf_threshold=0.8), image.convert("RGB"))
    assert len(shapes) == len(api_detections(client, "horses.jpg", threshold=0.8))
    assert len(shapes) < len(api_detections(client, "horses.jpg"))


def test_labels_given_in_the_tasks_spelling_are_matched_by_name_and_only_they_come_back(service_url, function_file):
    url, _ = service_url
    function = function_file.create(url=url, api_key="lab-key", labels="Dog, BICYCLE ")
    assert [(label.name, label.id) for label in function.spec.labels] == [
        ("Dog", COCO.index("dog")),
        ("BICYCLE", COCO.index("bicycle")),
    ]
    with Image.open(photo_path("dog.jpg")) as image:
        shapes = function.detect(FakeContext("dog.jpg"), image.convert("RGB"))
    assert {shape.label_id for shape in shapes} == {COCO.index("dog"), COCO.index("bicycle")}  # the truck is left out


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ({"labels": "Rotifer,dog"}, "Rotifer not among the model's classes"),
        ({"url": "ftp://detector"}, r"http\(s\) URL"),
        ({"api_key": "wrong"}, "401"),
        ({"url": "http://127.0.0.1:9"}, "cannot reach the detection service"),
    ],
)
def test_a_function_that_cannot_work_says_why_before_any_frame(service_url, function_file, parameters, says):
    url, _ = service_url
    with pytest.raises((ValueError, RuntimeError), match=says):
        function_file.create(**{"url": url, "api_key": "lab-key", **parameters})
