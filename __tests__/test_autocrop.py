"""Auto-crop to the sample and the original service's POST /upload, on photos made
like the job's: a saturated (iodine-stained) drop on a white or a dark dish, with
objects the demo model knows (dogs from dog.jpg) inside it."""

import base64
import io

import numpy as np
import pytest
import requests
from PIL import Image
from support import photo_rgb

from app.vision.autocrop import find_sample
from app.vision.tiling import should_tile, tile_grid
from synthetic.framed_photos import AMBER, DOGS, DROP, framed_photo, jpeg

# The counting tests' dish: the framed photo at 0.6 of its size, its twelve dogs as
# large as before (2400x1800: 42 tiles at 416 where 4000x3000 has 108).
DISH_SIZE, DISH_DROP = (2400, 1800), (420, 270, 1560, 1260)


def edges(box) -> tuple[int, int, int, int]:
    x, y, w, h = box
    return x, y, x + w, y + h


def near_the_drop(box, drop=DROP) -> bool:
    """Every edge within 6 px of the drop's, the drop inside."""
    (left, top, right, bottom), (x1, y1, x2, y2) = edges(box), edges(drop)
    inside = left <= x1 and top <= y1 and right >= x2 and bottom >= y2
    return inside and all(abs(a - b) <= 6 for a, b in zip((left, top, right, bottom), (x1, y1, x2, y2), strict=True))


@pytest.mark.parametrize("surround", [(250, 250, 248), (12, 12, 14)], ids=["white dish", "dark dish"])
def test_the_crop_is_the_drop_within_a_few_pixels(surround):
    crop = find_sample(framed_photo(surround))
    assert crop is not None
    assert near_the_drop(crop.as_list()), crop


@pytest.mark.parametrize(
    "photo",
    [
        np.full((1200, 1600, 3), AMBER, np.uint8),  # the stained sample fills the frame
        np.full((1200, 1600, 3), (128, 128, 128), np.uint8),  # nothing saturated at all
    ],
    ids=["sample fills the frame", "no colour"],
)
def test_no_crop_where_there_is_no_sample_to_crop_to(photo):
    assert find_sample(photo) is None


@pytest.fixture(scope="module")
def white_dish():
    return jpeg(framed_photo((250, 250, 248), DISH_SIZE, DISH_DROP))


def ask(client, photo: bytes, **params):
    response = client.post(
        "/invocations", data=photo, content_type="image/jpeg", query_string={"detections": "true", **params}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_auto_crop_counts_the_same_inside_with_fewer_tiles(client, white_dish, detector):
    whole, cropped = ask(client, white_dish), ask(client, white_dish, auto_crop="true")
    assert whole["stat"]["dog"] == cropped["stat"]["dog"] == DOGS
    x, y, w, h = cropped["crop"]
    assert near_the_drop((x, y, w, h), DISH_DROP), cropped["crop"]
    for box in (d["box"] for d in cropped["detections"]):  # in the whole photo's pixels
        assert x <= box[0] and box[0] + box[2] <= x + w and y <= box[1] and box[1] + box[3] <= y + h
    picture = Image.open(io.BytesIO(base64.b64decode(cropped["img"])))
    assert picture.size == DISH_SIZE  # the whole photo, the crop outlined on it
    network = (detector.model.network.width, detector.model.network.height)
    assert should_tile("auto", (w, h), network)
    assert len(tile_grid((w, h), network)) < len(tile_grid(DISH_SIZE, network))  # 20 < 42 at 416


def test_auto_crop_without_a_sample_counts_the_whole_photo_and_says_so(client):
    answer = ask(client, jpeg(photo_rgb("dog.jpg") * 0 + 128), auto_crop="1")
    assert answer["crop"] is None and "whole photo" in answer["crop_note"]


def test_no_crop_key_unless_asked(client, white_dish):
    assert "crop" not in ask(client, white_dish, tiling="off")


def test_upload_is_the_original_services_endpoint(live_server, white_dish):
    url = f"{live_server.url}/upload"
    plain = requests.post(url, files={"file": ("dish.jpg", white_dish, "image/jpeg")}, timeout=120)
    assert plain.status_code == 200 and set(plain.json()) == {"img", "stat"} and plain.json()["stat"]["dog"] == DOGS
    cropped = requests.post(
        url, files={"file": ("dish.jpg", white_dish, "image/jpeg")}, data={"auto_crop": "1"}, timeout=120
    ).json()
    assert cropped["stat"]["dog"] == DOGS and cropped["crop"] is not None
    for form, files, code in (
        ({"auto_crop": "2"}, {"file": ("d.jpg", white_dish, "image/jpeg")}, "invalid_parameter"),
        ({"auto_crop": "true"}, {"file": ("d.jpg", white_dish, "image/jpeg")}, "invalid_parameter"),
        ({}, {"image": ("d.jpg", white_dish, "image/jpeg")}, "missing_image"),  # /invocations' field name
    ):
        refused = requests.post(url, files=files, data=form, timeout=60)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == code, refused.text


@pytest.mark.parametrize("size", [(40_960, 20), (20, 40_960), (65_000, 1), (1, 3000)], ids=str)
def test_auto_crop_takes_a_photo_of_any_aspect_ratio(size):
    width, height = size
    photo = np.full((height, width, 3), 250, np.uint8)
    photo[:, width // 4 : width // 2] = AMBER  # a stained band: cropped to where it lies, or not at all
    crop = find_sample(photo)
    assert crop is None or (crop.x >= 0 and crop.x + crop.width <= width and crop.y + crop.height <= height)


def test_auto_crop_on_a_2048_to_1_photo_is_an_answer_not_a_500(fake_client):
    """HTTP and /upload took a 500 internal_error; `count --auto-crop` aborted the run.
    The fault was the crop's (find_sample), not the model's: on the fixed engine."""
    client = fake_client
    thin = io.BytesIO()
    Image.fromarray(np.full((8, 20_000, 3), AMBER, np.uint8)).save(thin, "PNG")
    response = client.post(
        "/invocations", data=thin.getvalue(), content_type="image/png", query_string={"auto_crop": "true"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    upload = client.post("/upload", data={"file": (io.BytesIO(thin.getvalue()), "thin.png"), "auto_crop": "1"})
    assert upload.status_code == 200, upload.get_data(as_text=True)
