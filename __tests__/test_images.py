import io

import numpy as np
import pytest
from PIL import Image
from support import encoded, photo_bytes

from app.vision.images import ImageTooLarge, InvalidImage, decode_image, encode_jpeg

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
