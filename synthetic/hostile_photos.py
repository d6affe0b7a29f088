"""Hostile photos, made on the fly (none is committed): bombs, canvases that grow, files
whose structure is millions of tiny parts. The tests (__tests__/test_hostile_photos.py,
test_photo_structure.py) and bench/hostile.py send the same photos.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOG = (ROOT / "data" / "dog.jpg").read_bytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(
    width: int, height: int, bit_depth: int = 8, colour_type: int = 2, pixels: bool = True, noise: int = 0
) -> bytes:
    """A PNG of blank pixels, compressed row by row (a 100 MP one is ~300 KB), but for
    `noise` random bytes in its first rows; pixels=False gives the header alone: a
    decompression bomb's promise."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
    body = b""
    if pixels:
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
        size = (width * channels * bit_depth + 7) // 8
        random = os.urandom(noise)
        noisy = [b"\0" + random[at : at + size].ljust(size, b"\0") for at in range(0, noise, size)]
        row = b"\0" + bytes(size)
        compressor = zlib.compressobj(9)
        data = b"".join(compressor.compress(noisy[y] if y < len(noisy) else row) for y in range(height))
        body = _png_chunk(b"IDAT", data + compressor.flush())
        if colour_type == 3:
            header += _png_chunk(b"PLTE", bytes(3 * 256))
    return b"\x89PNG\r\n\x1a\n" + header + body + _png_chunk(b"IEND", b"")


def webp_lossless(width: int, height: int) -> bytes:
    """A few KB that decode to width x height: lossless WebP of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 60, 30)).save(buffer, "WEBP", lossless=True, quality=0, method=0)
    return buffer.getvalue()


def jpeg_claiming(width: int, height: int, jpeg: bytes = DOG) -> bytes:
    """dog.jpg with its frame header patched to a bigger size: libjpeg would decode
    the rest of the promised pixels as grey, and tiled inference would run on them."""
    start = next(jpeg.find(marker) for marker in (b"\xff\xc0", b"\xff\xc2") if jpeg.find(marker) > 0)
    patched = bytearray(jpeg)
    patched[start + 5 : start + 9] = struct.pack(">HH", height, width)
    return bytes(patched)


def jpeg_cut_with_end_marker(jpeg: bytes = DOG) -> bytes:
    """The first third of a photo plus an end marker: looks complete, is not."""
    return jpeg[: len(jpeg) // 3] + b"\xff\xd9"


def jpeg_with_repeated_scans(repeats: int = 10_000, size: int = 2000) -> bytes:
    """A progressive JPEG whose last refinement scan is repeated: every scan is a full
    pass over the photo for the decoder, the file grows by a few bytes each."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 150, 80)).save(buffer, "JPEG", progressive=True, quality=50)
    data = buffer.getvalue()
    last_scan = data.rfind(b"\xff\xda")
    scan = data[last_scan:-2]  # through the end of its entropy-coded data, without EOI
    return data[:-2] + scan * repeats + b"\xff\xd9"


def ico_holding_png(width: int, height: int) -> bytes:
    """An icon whose one entry is a PNG: Pillow's ICO reader decodes it to learn its size."""
    payload = png(width, height, pixels=False)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(payload), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + payload


def icns_holding_png(width: int, height: int) -> bytes:
    payload = png(width, height, pixels=False)
    entry = b"ic10" + struct.pack(">I", 8 + len(payload)) + payload
    return b"icns" + struct.pack(">I", 8 + len(entry)) + entry


def dds_with_unknown_flags() -> bytes:
    """A 400-byte DDS header whose pixel format flags no reader knows."""
    header = bytearray(128)
    header[0:4] = b"DDS "
    struct.pack_into("<IIII", header, 4, 124, 0x1007, 64, 64)
    struct.pack_into("<II", header, 76, 32, 0x80000)  # pixel format size, unknown flags
    return bytes(header) + bytes(272)


def gif_growing_canvas(screen: int = 10, at: int = 9000, padding: int = 0) -> bytes:
    """35 bytes: a 10x10 screen whose one 1x1 frame sits at (9000, 9000); Pillow grows
    the canvas to hold it, to 9001x9001 (81 MP). `padding` bytes of comment blocks before
    the frame pay the bytes a pixels-per-byte bound of the file asks (round 4: 84 KB, 958
    pixels a byte of file)."""
    header = b"GIF89a" + struct.pack("<HHBBB", screen, screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", at, at, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + gif_extension(0xFE, os.urandom(padding)) + frame + b";"


def gif_extension(label: int, payload: bytes, identifier: bytes = b"") -> bytes:
    """A GIF extension block (0xFE comment, 0xFF application with its 11-byte identifier)
    holding `payload` in 255-byte sub-blocks; nothing for an empty payload."""
    if not payload:
        return b""
    blocks = b"".join(
        bytes([len(part)]) + part for part in (payload[at : at + 255] for at in range(0, len(payload), 255))
    )
    head = bytes([len(identifier)]) + identifier if identifier else b""
    return b"!" + bytes([label]) + head + blocks + b"\0"


def png_with_text(width: int, height: int, padding: int) -> bytes:
    """A blank 1-bit PNG (a 100 MP one is 12 KB of IDAT) after `padding` bytes of text
    chunks, a third each tEXt, zTXt and iTXt: metadata a client adds at will."""
    photo = png(width, height, bit_depth=1, colour_type=0)
    text = os.urandom(padding // 3).hex()[: padding // 3].encode()
    compressed = zlib.compress(os.urandom(padding // 3))  # incompressible: stays its size
    chunks = (
        _png_chunk(b"tEXt", b"Comment\0" + text)
        + _png_chunk(b"zTXt", b"Description\0\0" + compressed)
        + _png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + text)
    )
    header_end = 8 + 25
    return photo[:header_end] + chunks + photo[header_end:]


def webp_with_metadata(width: int, height: int, padding: int) -> bytes:
    """webp_lossless after `padding` bytes of XMP and EXIF (a VP8X file)."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 60, 30)).save(
        buffer, "WEBP", lossless=True, quality=0, method=0, xmp=os.urandom(padding // 2), exif=bytes(padding // 2)
    )
    return buffer.getvalue()


def tiff_with_description(width: int, height: int, padding: int) -> bytes:
    """A blank bilevel TIFF in CCITT group 4 (a 100 MP one is a few hundred bytes) with an
    ImageDescription tag of `padding` bytes."""
    buffer = io.BytesIO()
    Image.new("1", (width, height), 1).save(buffer, "TIFF", compression="group4", tiffinfo={270: "x" * padding})
    return buffer.getvalue()


def jpeg_with_app_segments(count: int = 6_000_000, jpeg: bytes = DOG) -> bytes:
    """dog.jpg after `count` empty APP5 segments: Pillow reads each in Python."""
    return jpeg[:2] + b"\xff\xe5\x00\x02" * count + jpeg[2:]


def png_with_empty_chunks(count: int = 3_500_000) -> bytes:
    """A small real PNG with `count` empty private chunks before its pixels."""
    photo = png(64, 48)
    header_end = 8 + 25  # signature, IHDR
    return photo[:header_end] + _png_chunk(b"prVt", b"") * count + photo[header_end:]


def tiff_with_strips(strips: int = 3_000_000) -> bytes:
    """A 1-pixel-wide grey TIFF of one row per strip: a strip list of millions of entries
    that Pillow unpacks into Python tuples before any size check."""
    tags = [(256, 4, 1, 1), (257, 4, 1, strips), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (278, 4, 1, 1)]
    directory_size = 2 + 12 * (len(tags) + 2) + 4
    offsets_at = 8 + directory_size
    counts_at = offsets_at + 4 * strips
    pixels_at = counts_at + 4 * strips
    tags += [(273, 4, strips, offsets_at), (279, 4, strips, counts_at)]
    directory = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *tag) for tag in sorted(tags))
    offsets = struct.pack(f"<{strips}I", *range(pixels_at, pixels_at + strips))
    return (
        b"II*\0"
        + struct.pack("<I", 8)
        + directory
        + struct.pack("<I", 0)
        + offsets
        + struct.pack(f"<{strips}I", *([1] * strips))
        + bytes(strips)
    )


def exif_with_values(count: int = 10_000_000) -> bytes:
    """An EXIF block (TIFF structure) whose one tag claims `count` LONG values."""
    directory = struct.pack("<H", 1) + struct.pack("<HHII", 0x013B, 4, count, 26) + struct.pack("<I", 0)
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + directory + bytes(min(count, 1_000_000) * 4)


def png_with_exif(exif: bytes) -> bytes:
    """A small real PNG carrying `exif` as its eXIf chunk (without the Exif\\0\\0 prefix)."""
    photo = png(64, 48)
    header_end = 8 + 25
    raw = exif[6:] if exif.startswith(b"Exif\0\0") else exif
    return photo[:header_end] + _png_chunk(b"eXIf", raw) + photo[header_end:]


def padded_png(width: int, height: int, padding: int) -> bytes:
    """A blank PNG but for `padding` bytes of noise in its pixels: a bomb that pays
    enough bytes of pixel data to pass the pixels-per-byte bound, so only the pixel budget
    stands. (Padding in a chunk of its own no longer pays: metadata justifies no pixel.)"""
    return png(width, height, noise=padding)
