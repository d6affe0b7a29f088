"""The structure of a photo's container bounded from its first bytes (app/vision/structure.py)
and the pixels-per-byte bound: in-process, no model, no server. The hostile files are
made on the fly (synthetic/hostile_photos.py); over HTTP they are test_hostile_photos.py's."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile
from support import photo_bytes

from app.vision.images import (
    MAX_PIXELS_PER_BYTE,
    DamagedImage,
    DecompressionBomb,
    decode_image,
    open_photo,
)
from app.vision.structure import (
    JPEG_MAX_SCANS,
    JPEG_MAX_SEGMENTS,
    PNG_MAX_CHUNKS,
    TIFF_MAX_DIRECTORIES,
    TIFF_MAX_TAGS,
    TIFF_MAX_VALUES,
    HostileStructure,
    check_exif,
    check_structure,
)
from synthetic.hostile_photos import (
    exif_with_values,
    gif_extension,
    gif_growing_canvas,
    jpeg_with_app_segments,
    jpeg_with_repeated_scans,
    padded_png,
    png,
    png_with_empty_chunks,
    png_with_exif,
    png_with_text,
    tiff_with_description,
    tiff_with_strips,
    webp_lossless,
    webp_with_metadata,
)
from synthetic.phone_photos import google_motion_photo, mp4_like, phone_jpeg, samsung_motion_photo, with_segment

DOG = photo_bytes("dog.jpg")
LIMIT = 100_000_000


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


DOG_IMAGE = Image.open(io.BytesIO(DOG))
REAL_PHOTOS = {
    "JPEG": DOG,
    "progressive JPEG": encoded(DOG_IMAGE, "JPEG", progressive=True),
    "JPEG with EXIF": encoded(DOG_IMAGE, "JPEG", exif=DOG_IMAGE.getexif()),
    "PNG": encoded(DOG_IMAGE, "PNG"),
    "16-bit PNG": encoded(DOG_IMAGE.convert("L").convert("I;16"), "PNG"),
    "TIFF": encoded(DOG_IMAGE, "TIFF"),
    "deflated TIFF": encoded(DOG_IMAGE, "TIFF", compression="tiff_deflate"),
    "multi-page TIFF": encoded(DOG_IMAGE, "TIFF", save_all=True, append_images=[Image.new("RGB", (64, 64))]),
    "GIF": encoded(DOG_IMAGE, "GIF", comment=b"x" * 2000),
    "animated GIF": encoded(DOG_IMAGE, "GIF", save_all=True, append_images=[DOG_IMAGE.rotate(90)]),
    "WebP": encoded(DOG_IMAGE, "WEBP"),
    "BMP": encoded(DOG_IMAGE, "BMP"),
}


@pytest.mark.parametrize("name", REAL_PHOTOS)
def test_what_cameras_write_passes_every_structural_bound(name):
    check_structure(REAL_PHOTOS[name])
    assert decode_image(REAL_PHOTOS[name], LIMIT).shape == (576, 768, 3)


def test_a_gif_whose_frame_grows_the_canvas_is_checked_at_the_grown_size():
    opened = None
    with pytest.raises(DecompressionBomb, match=r"81 megapixels from 2 bytes of pixel data \(of 35 in the file\)"):
        opened = open_photo(gif_growing_canvas(), LIMIT)
    assert opened is None
    with pytest.raises(Exception, match="9001x9001"):  # under a smaller limit: the grown size is what is checked
        open_photo(gif_growing_canvas(), 50_000_000)


def test_a_photo_with_absurd_pixels_per_byte_is_a_bomb_and_a_plausible_one_is_not():
    with pytest.raises(DecompressionBomb):
        open_photo(webp_lossless(4000, 3000), LIMIT)
    bomb = padded_png(4000, 3000, 12_000_000 // MAX_PIXELS_PER_BYTE)  # pays its bytes in pixels: the budget's to hold
    assert open_photo(bomb, LIMIT).pixels == 12_000_000
    assert open_photo(webp_lossless(1000, 1000), LIMIT).pixels == 1_000_000  # a megapixel costs little


def test_jpeg_segments_before_the_picture_are_bounded():
    check_structure(jpeg_with_app_segments(JPEG_MAX_SEGMENTS - 20))
    with pytest.raises(HostileStructure, match="segments"):
        check_structure(jpeg_with_app_segments(JPEG_MAX_SEGMENTS))


def test_jpeg_garbage_between_segments_is_bounded():
    with pytest.raises(HostileStructure, match="garbage"):
        check_structure(DOG[:2] + bytes(1_000_000) + DOG[2:])


def test_png_chunks_are_bounded_over_the_whole_file():
    check_structure(png_with_empty_chunks(1000))
    with pytest.raises(HostileStructure, match="chunks"):
        check_structure(png_with_empty_chunks(PNG_MAX_CHUNKS))


def test_gif_extension_blocks_before_the_picture_are_bounded():
    gif = encoded(Image.new("P", (8, 8)), "GIF")
    comment = b"!\xfe" + b"\x01x" * 5000 + b"\x00"
    at = gif.index(b",")
    with pytest.raises(HostileStructure, match="extension blocks"):
        check_structure(gif[:at] + comment + gif[at:])


def test_tiff_strips_are_bounded_from_the_directory():
    check_structure(tiff_with_strips(1000))
    with pytest.raises(HostileStructure, match="strips"):
        check_structure(tiff_with_strips(TIFF_MAX_VALUES + 1))
    with pytest.raises(DamagedImage, match="strips"):
        decode_image(tiff_with_strips(TIFF_MAX_VALUES + 1), LIMIT)


def tiff_directory(tags: list[tuple[int, int, int, int]], next_offset: int = 0, at: int = 8) -> bytes:
    return (
        struct.pack("<H", len(tags))
        + b"".join(struct.pack("<HHII", *tag) for tag in tags)
        + struct.pack("<I", next_offset)
    )


def test_tiff_tags_per_directory_and_linked_directories_are_bounded():
    many = b"II*\0" + struct.pack("<I", 8) + tiff_directory([(300 + i, 3, 1, 0) for i in range(TIFF_MAX_TAGS + 1)])
    with pytest.raises(HostileStructure, match="tags"):
        check_structure(many)
    # A chain of directories, each pointing to the next through its Exif tag.
    chain = b"II*\0" + struct.pack("<I", 8)
    size = 2 + 12 + 4
    for index in range(TIFF_MAX_DIRECTORIES + 2):
        chain += tiff_directory([(0x8769, 4, 1, 8 + (index + 1) * size)])
    with pytest.raises(HostileStructure, match="directories"):
        check_structure(chain)
    loop = b"II*\0" + struct.pack("<I", 8) + tiff_directory([(0x8769, 4, 1, 8)], next_offset=8)
    check_structure(loop)  # a directory pointing to itself is walked once


def test_an_exif_block_claiming_millions_of_values_is_damage():
    with pytest.raises(HostileStructure, match="values"):
        check_exif(exif_with_values())
    with pytest.raises(DamagedImage, match="EXIF"):
        decode_image(png_with_exif(exif_with_values()), LIMIT)
    check_exif(DOG_IMAGE.getexif().tobytes())


def test_a_png_whose_exif_follows_its_pixels_is_checked_when_decoded():
    photo = png(64, 48)
    end = photo.rindex(b"IEND") - 4
    exif = exif_with_values()[6:]
    chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif + struct.pack(">I", zlib.crc32(b"eXIf" + exif))
    late = photo[:end] + chunk + photo[end:]
    with pytest.raises(DamagedImage, match="EXIF"):
        decode_image(late, LIMIT)


# Row 1 of round 4: what a phone appends after its JPEG is not the photo. The walk goes
# segment by segment and through each scan's entropy-coded data to the JPEG's end of
# image; scans are counted there, not as FF DA pairs anywhere in the file.
SMALL_PHONE = phone_jpeg((1280, 960))  # 1.2 MP: the pixels-per-byte bound applies
VIDEO = mp4_like(4_000_000)
HALF = SMALL_PHONE[: len(SMALL_PHONE) // 2]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("Google Motion Photo", lambda: google_motion_photo(SMALL_PHONE, VIDEO)),
        ("Google MicroVideo", lambda: google_motion_photo(SMALL_PHONE, VIDEO, version=0)),
        ("Samsung Motion Photo", lambda: samsung_motion_photo(SMALL_PHONE, VIDEO)),
        ("trailing zeros", lambda: SMALL_PHONE + bytes(100_000)),
    ],
)
def test_the_walk_ends_at_the_jpegs_end_of_image_and_ignores_what_follows(name, make):
    data = make()
    assert data.count(b"\xff\xda") > 10 * JPEG_MAX_SCANS or name == "trailing zeros"  # what was counted
    layout = check_structure(data)
    plain = check_structure(SMALL_PHONE)
    assert data[: layout.end].endswith(b"\xff\xd9") and layout.end < len(data)
    rest = data[layout.end :]
    sef_block = struct.pack("<HHI", 0, 0x0A30, 16) + b"MotionPhoto_Data" + VIDEO
    samsung = rest.startswith(sef_block) and rest.endswith(b"SEFT")
    assert rest in (VIDEO, bytes(100_000)) or samsung
    assert layout.picture_bytes == plain.picture_bytes  # the same scans: the XMP segment is no picture
    assert open_photo(data, LIMIT).data == data[: layout.end]


def test_an_mpo_is_walked_to_the_end_of_its_first_picture():
    first = Image.new("RGB", (64, 48), (200, 100, 50))
    data = encoded(first, "MPO", save_all=True, append_images=[Image.new("RGB", (640, 480))])
    layout = check_structure(data)
    assert Image.open(io.BytesIO(data[: layout.end])).size == (64, 48)
    assert Image.open(io.BytesIO(data[layout.end :])).size == (640, 480)  # the second picture, whole


def test_an_end_of_image_inside_a_segment_is_not_the_photos_end():
    """An EXIF thumbnail is a whole JPEG inside APP1, with its own FF D9 (the job's photo has
    one): the walk jumps segments by their length, never searches for the end marker."""
    thumbnail = encoded(Image.new("RGB", (160, 120), (9, 9, 9)), "JPEG")
    data = with_segment(SMALL_PHONE, 0xE1, DOG_IMAGE.getexif().tobytes() + thumbnail)
    assert check_structure(data).end == len(data)
    assert decode_image(data, LIMIT).shape == (960, 1280, 3)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("Motion Photo cut mid-scan", lambda: google_motion_photo(HALF, VIDEO), "damaged"),
        ("Motion Photo of 10,000 scans", lambda: samsung_motion_photo(jpeg_with_repeated_scans(), VIDEO), "scans"),
        ("JPEG cut mid-scan", lambda: HALF, "(?i)premature end"),
    ],
)
def test_a_damaged_jpeg_is_refused_whatever_follows_it(name, make, message):
    with pytest.raises(DamagedImage, match=message):
        decode_image(make(), LIMIT)


def test_the_scans_of_the_jpeg_itself_are_counted():
    check_structure(jpeg_with_repeated_scans(JPEG_MAX_SCANS - 20))
    with pytest.raises(HostileStructure, match=f"more than {JPEG_MAX_SCANS} scans"):
        check_structure(jpeg_with_repeated_scans(JPEG_MAX_SCANS))


# Row 2 of round 4: the pixels-per-byte bound counts compressed pixel data only; what a
# client adds at will (comments, text chunks, XMP, EXIF, descriptions) justifies no pixel.
PADDED_BOMBS = {
    "GIF 1x1 frame, 84 KB of comments": lambda: gif_growing_canvas(padding=84_000),
    "GIF 1x1 frame, 84 KB of XMP application blocks": lambda: _gif_with(
        extension=gif_extension(0xFF, os.urandom(84_000), b"XMP DataXMP")
    ),
    "GIF 1x1 frame, comments after it": lambda: _gif_with(after=gif_extension(0xFE, os.urandom(84_000))),
    "GIF 1x1 frame, 84 KB of LZW sub-blocks past its pixel": lambda: _gif_with(data=b"\xff" * 256 * 330),
    "GIF 1x1 frame, an 84 KB second frame": lambda: _gif_with(
        after=b"," + struct.pack("<HHHHB", 0, 0, 300, 300, 0) + b"\x08" + (b"\xff" + os.urandom(255)) * 330 + b"\0"
    ),
    "PNG 1-bit 100 MP, 120 KB of tEXt, zTXt, iTXt": lambda: png_with_text(10_000, 10_000, 120_000),
    "lossless WebP 12 MP, 24 KB of XMP and EXIF": lambda: webp_with_metadata(4000, 3000, 24_000),
    "group 4 TIFF 36 MP, 40 KB description": lambda: tiff_with_description(6000, 6000, 40_000),
}


def _gif_with(extension: bytes = b"", data: bytes = b"", after: bytes = b"") -> bytes:
    """gif_growing_canvas's 1x1 frame at (9000, 9000), padded where named."""
    plain = gif_growing_canvas()
    frame = plain.index(b",", 13)
    lzw_end = len(plain) - 2  # the frame's block terminator, then the trailer
    return plain[:frame] + extension + plain[frame:lzw_end] + data + b"\0" + after + b";"


@pytest.mark.parametrize("name", PADDED_BOMBS)
def test_padding_pays_no_pixels(name, monkeypatch):
    """Each passed the bound when it counted the file's bytes (958-8,000 pixels a byte
    of file); refused from the header, and no decoder is ever started."""
    started = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: started.append(self))
    data = PADDED_BOMBS[name]()
    width, height = Image.open(io.BytesIO(data)).size
    assert len(data) * MAX_PIXELS_PER_BYTE >= width * height  # pays by the file's bytes
    with pytest.raises(DecompressionBomb, match=r"megapixels from \d+ bytes of pixel data"):
        open_photo(data, LIMIT)
    assert started == []


def test_metadata_in_a_jpeg_is_no_pixel_data():
    image = Image.open(io.BytesIO(SMALL_PHONE))
    plain = encoded(image, "JPEG", quality=92)
    padded = with_segment(encoded(image, "JPEG", quality=92, icc_profile=os.urandom(600_000)), 0xFE, b"x" * 60_000)
    assert len(padded) > len(plain) + 660_000
    assert check_structure(padded).picture_bytes == check_structure(plain).picture_bytes


# What cameras, phones, microscopes and Pillow write, over a megapixel (where the bound
# applies), in each format whose pixel data is now counted apart from its metadata.
BIG = Image.open(io.BytesIO(SMALL_PHONE))  # 1280x960, a phone's noise
TURNED = BIG.rotate(3)
BIG_RGBA = BIG.convert("RGBA")
BIG_RGBA.paste((0, 0, 0, 0), (0, 0, 1280, 480))  # the top half transparent: a smaller first frame
SMALLER = BIG.resize((1200, 900))  # 1.08 MP: lossless WebP of noise is slow to make
GREY16 = Image.fromarray(np.asarray(BIG.convert("L")).astype(np.uint16) * 257)
REAL_BIG_PHOTOS = {
    "12 MP phone JPEG, 600 KB ICC profile": lambda: phone_jpeg(icc_profile=os.urandom(600_000)),
    "progressive JPEG": lambda: encoded(BIG, "JPEG", progressive=True, quality=90),
    "JPEG with a restart marker every MCU": lambda: encoded(BIG, "JPEG", restart_marker_blocks=1),
    "animated GIF": lambda: encoded(BIG, "GIF", save_all=True, append_images=[TURNED]),
    "animated GIF, top half transparent": lambda: encoded(BIG_RGBA, "GIF", save_all=True, append_images=[TURNED]),
    "animated WebP": lambda: encoded(BIG, "WEBP", save_all=True, append_images=[TURNED]),
    "animated WebP, top half transparent": lambda: encoded(BIG_RGBA, "WEBP", save_all=True, append_images=[TURNED]),
    "animated lossless WebP": lambda: encoded(
        BIG.resize((1200, 900)),
        "WEBP",
        save_all=True,
        append_images=[TURNED.resize((1200, 900))],
        lossless=True,
        method=0,
    ),
    "APNG": lambda: encoded(BIG, "PNG", save_all=True, append_images=[TURNED], compress_level=1),
    "APNG with a default image": lambda: encoded(
        BIG, "PNG", save_all=True, append_images=[TURNED], default_image=True, compress_level=1
    ),
    "16-bit PNG": lambda: encoded(GREY16, "PNG"),
    "16-bit TIFF": lambda: encoded(GREY16, "TIFF"),
    "deflated TIFF": lambda: encoded(BIG, "TIFF", compression="tiff_deflate"),
    "JPEG-compressed TIFF": lambda: encoded(BIG, "TIFF", compression="jpeg"),
    "WebP with EXIF and XMP": lambda: encoded(BIG, "WEBP", quality=80, exif=DOG_IMAGE.getexif(), xmp=b"<x/>" * 1000),
    "BMP": lambda: encoded(BIG, "BMP"),
}


@pytest.mark.parametrize("name", REAL_BIG_PHOTOS)
def test_real_photos_over_a_megapixel_are_read_whatever_their_metadata(name):
    data = REAL_BIG_PHOTOS[name]()
    opened = open_photo(data, LIMIT)
    assert opened.pixels > 1_000_000
    assert opened.pixels < 100 * check_structure(data).picture_bytes  # far from the bound
    assert opened.decode().shape[:2] == opened.image.size[::-1]


def test_a_100_mp_png_in_8_kb_idat_chunks_passes_from_its_header():
    """libpng's layout: the pixel data split over hundreds of chunks, every one counted.
    Grey, blank rows but for 3 MB of noise: 33 pixels a byte."""
    photo = png(10_000, 10_000, colour_type=0, noise=3_000_000)
    start = photo.index(b"IDAT") - 4
    (length,) = struct.unpack_from(">I", photo, start)
    pixels = photo[start + 8 : start + 8 + length]
    chunks = b"".join(idat_chunk(pixels[at : at + 8192]) for at in range(0, len(pixels), 8192))
    split = photo[:start] + chunks + photo[start + 12 + length :]
    assert split.count(b"IDAT") > 350
    assert check_structure(split).picture_bytes == length
    assert open_photo(split, LIMIT).pixels == 100_000_000


def idat_chunk(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
