import io

import numpy as np
import pytest
from fakes import FAKE_STAT
from PIL import Image
from support import encoded, photo_bytes

from app.cli.count import count_photo
from app.vision.detection import DetectOptions
from app.vision.images import ImageTooLarge, InvalidImage, decode_image, encode_jpeg
from synthetic.phone_photos import google_motion_photo, mp4_like, mpo, phone_jpeg, samsung_motion_photo

LIMIT = 100_000_000


def test_jpeg_decodes_to_rgb():
    rgb = decode_image(photo_bytes("dog.jpg"), LIMIT)
    assert rgb.shape == (576, 768, 3) and rgb.dtype == np.uint8


def test_exif_orientation_is_applied():
    photo = Image.open(io.BytesIO(photo_bytes("dog.jpg")))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    rgb = decode_image(encoded(photo, "JPEG", exif=exif), LIMIT)
    assert rgb.shape == (768, 576, 3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: encoded(Image.new("L", (40, 30), 128), "JPEG"),
        lambda: encoded(Image.new("RGBA", (40, 30), (255, 0, 0, 0)), "PNG"),
        lambda: encoded(Image.new("I;16", (40, 30), 65535), "PNG"),
        lambda: encoded(Image.new("CMYK", (40, 30), (0, 0, 0, 0)), "JPEG"),
        lambda: encoded(Image.new("RGB", (40, 30), (9, 9, 9)), "WEBP"),
        lambda: encoded(Image.new("P", (40, 30), 3), "GIF"),
        lambda: encoded(Image.new("RGB", (40, 30)), "TIFF", save_all=True, append_images=[Image.new("RGB", (8, 8))]),
    ],
    ids=["grey", "alpha", "16-bit", "cmyk", "webp", "palette", "multipage-tiff"],
)
def test_other_image_kinds_become_8_bit_rgb(make):
    rgb = decode_image(make(), LIMIT)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8


def test_transparent_is_white_and_16_bit_is_scaled():
    assert decode_image(encoded(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG"), LIMIT)[0, 0].tolist() == [255] * 3
    assert decode_image(encoded(Image.new("I;16", (4, 4), 32896), "PNG"), LIMIT)[0, 0].tolist() == [128] * 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is text", "not an image format"),
        (photo_bytes("dog.jpg")[:4000], "damaged or truncated"),
    ],
    ids=["empty", "text", "truncated-jpeg"],
)
def test_unreadable_data_is_invalid_image(data, message):
    with pytest.raises(InvalidImage, match=message):
        decode_image(data, LIMIT)


def test_pixel_limit_is_checked_from_the_header():
    # 30000x30000 declared; refused before the 900 MP are decoded.
    bomb = encoded(Image.new("1", (30000, 30000)), "PNG")
    with pytest.raises(ImageTooLarge, match="30000x30000"):
        decode_image(bomb, LIMIT)


def test_encode_jpeg_round_trips_size_and_colour():
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[..., 0] = 250
    back = np.asarray(Image.open(io.BytesIO(encode_jpeg(rgb))))
    assert back.shape == (20, 30, 3)
    assert back[10, 15, 0] > 200 and back[10, 15, 2] < 50  # still red: channel order kept


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_jpeg_path_equals_pillows_for_every_orientation(orientation):
    photo = Image.open(io.BytesIO(photo_bytes("dog.jpg")))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(photo, "JPEG", exif=exif)
    reference = Image.open(io.BytesIO(data))
    method = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}.get(orientation)  # Image.Transpose values
    expected = np.asarray((reference.transpose(method) if method is not None else reference).convert("RGB"))
    rgb = decode_image(data, LIMIT)
    assert rgb.shape == expected.shape
    # Two builds of libjpeg may round the colour conversion differently by a step or two.
    assert np.abs(rgb.astype(int) - expected).max() <= 3


# Phones append to their JPEGs (synthetic/phone_photos.py): a Motion Photo's MP4 with
# thousands of FF D8 / FF DA pairs in it, an MPO's second picture, padding. The photo is
# the first JPEG, up to its end of image; the rest was once counted as scans and refused.
PHONE = phone_jpeg()  # 12 MP, ~3.3 MB
VIDEO = mp4_like(6_000_000)
FIRST, SECOND = Image.open(io.BytesIO(photo_bytes("dog.jpg"))), Image.open(io.BytesIO(photo_bytes("horses.jpg")))
PHONE_LAYOUTS = {
    "Google Motion Photo": lambda: google_motion_photo(PHONE, VIDEO),
    "Google MicroVideo": lambda: google_motion_photo(PHONE, VIDEO, version=0),
    "Samsung Motion Photo": lambda: samsung_motion_photo(PHONE, VIDEO),
    "JPEG + 1 MB of zeros": lambda: PHONE + bytes(1_000_000),
}


@pytest.mark.parametrize("layout", PHONE_LAYOUTS)
def test_a_phones_jpeg_with_its_video_or_padding_appended_decodes_as_its_jpeg(layout):
    assert np.array_equal(decode_image(PHONE_LAYOUTS[layout](), LIMIT), decode_image(PHONE, LIMIT))


def test_an_mpo_decodes_as_its_first_picture():
    data = mpo(FIRST, SECOND)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    first = Image.open(io.BytesIO(data))
    first.seek(0)
    rgb = decode_image(data, LIMIT)
    assert rgb.shape == (576, 768, 3)
    assert np.abs(rgb.astype(int) - np.asarray(first.convert("RGB"))).max() <= 3  # not the horses


@pytest.mark.parametrize("layout", [*PHONE_LAYOUTS, "MPO"])
def test_the_app_counts_a_phones_layout_as_its_jpeg(fake_client, layout):
    """The whole Flask app, raw body and multipart, on a fixed engine: the same answer as
    for the plain JPEG."""
    data, plain = (mpo(FIRST, SECOND), photo_bytes("dog.jpg")) if layout == "MPO" else (PHONE_LAYOUTS[layout](), PHONE)
    query = "/invocations?tiling=off&return_image=false"
    expected = fake_client.post(query, data=plain, content_type="image/jpeg")
    assert expected.status_code == 200, expected.get_json()
    for response in (
        fake_client.post(query, data=data, content_type="image/jpeg"),
        fake_client.post(query, data=multipart(data), content_type=f"multipart/form-data; boundary={BOUNDARY}"),
    ):
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["stat"] == expected.get_json()["stat"] == FAKE_STAT


BOUNDARY = "motion-photo"


def multipart(photo: bytes, filename: str = "PXL_20260514.MP.jpg") -> bytes:
    """A form with the photo as its `image` field, encoded here: the test client spools a
    body over 500 KB to a temporary file it never closes."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n\r\n'
    return head.encode() + photo + f"\r\n--{BOUNDARY}--\r\n".encode()


def test_the_count_command_counts_a_motion_photo_as_its_jpeg(detector, settings, tmp_path):
    """On the real model: dog.jpg with 6 MB of video appended, as the count command reads it."""
    (tmp_path / "dog.jpg").write_bytes(photo_bytes("dog.jpg"))
    (tmp_path / "MVIMG_dog.jpg").write_bytes(google_motion_photo(photo_bytes("dog.jpg"), VIDEO, version=0))
    (tmp_path / "dog_samsung.jpg").write_bytes(samsung_motion_photo(photo_bytes("dog.jpg"), VIDEO))
    counts = [
        count_photo(tmp_path / name, detector, DetectOptions(), settings, auto_crop=False, annotated=False).counts
        for name in ("dog.jpg", "MVIMG_dog.jpg", "dog_samsung.jpg")
    ]
    assert counts[0]["dog"] == 1 and counts[1] == counts[0] and counts[2] == counts[0]
