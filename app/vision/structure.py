"""A photo's container structure, bounded from its first bytes, before any decoder walks it.

Pillow reads a photo's header in Python, one marker, chunk, block or tag value at a
time: a 36 MB JPEG of 6 million APP segments, a 43 MB PNG of 3.5 million empty chunks
or a TIFF whose strip list has millions of entries took 9-76 s and up to 4.8 GB before
any size check could run. These walks read only lengths and counts (C-speed jumps, no
values), stop at the first bound passed, and say why: a hostile file is a 400 within
milliseconds. The bounds are far above what cameras, phones and microscopes write.

The walk also says where the picture decoded ends (a JPEG's end of image: a phone's
Motion Photo appends an MP4 after it) and how many of its bytes are compressed pixels,
the only bytes that can justify its pixel count (images.py's pixels-per-byte bound).
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

# JPEG: segments in the picture. A camera writes about a dozen (APP0/APP1 EXIF/APP2 ICC
# and MPF, DQT, DHT, SOF, SOS), a progressive JPEG a DHT and SOS a scan; an ICC profile may
# be split over at most 255 APP2s.
JPEG_MAX_SEGMENTS = 1024
# Bytes between segments that are not a marker: a few padding bytes at most in real
# files; Pillow steps over them one Python call per byte.
JPEG_MAX_GARBAGE = 64 * 1024
# A progressive JPEG has about 10 scans; decoding time grows with their number, and a
# crafted file repeats one scan thousands of times (10,000 took 10 s for 4 MP).
JPEG_MAX_SCANS = 100
# What ends a scan's entropy-coded data: a marker. Inside it 0xFF is always followed by
# 0x00 (a stuffed 0xFF), a restart marker (D0-D7) or another 0xFF (fill). A regular
# expression finds it at C speed past a 12 MP photo's thousands of stuffed bytes.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, restarts, SOI: markers without a length
# PNG: chunks in the whole file. libpng writes 8 KB IDATs: a 50 MB PNG has ~6,400.
PNG_MAX_CHUNKS = 65_536
# GIF: extension sub-blocks (255 bytes each) before the first frame: comments, XMP,
# the NETSCAPE loop block; Pillow reads each in Python.
GIF_MAX_BLOCKS = 4096
# A frame's LZW data needs at most a 12-bit code a pixel; what it holds beyond that
# (plus a sub-block) is padding, not pixels: a 1x1 frame's 84 KB would justify 81 MP.
GIF_DATA_PER_PIXEL = 2
# Sub-blocks of the first frame counted, then counting stops: 16 MB of a real frame's
# (255 bytes each), far more than any canvas needs; a crafted frame of 1-byte sub-blocks
# costs no more than 65,536 steps.
GIF_DATA_BLOCKS_COUNTED = 65_536
# WebP: chunks up to the picture (a camera's: VP8X, ICCP, EXIF, XMP, then the bitstream),
# and a frame's bitstream credited at most 4 bytes a pixel (lossy or lossless).
WEBP_MAX_CHUNKS = 1024
WEBP_DATA_PER_PIXEL = 4
_WEBP_BITSTREAMS = (b"ALPH", b"VP8 ", b"VP8L")
# TIFF and EXIF (a TIFF structure inside JPEG, PNG and WebP): tags in one directory
# (cameras write 20-60, raw-like DNGs a few hundred), directories walked, and values
# in one numeric tag. Strips and tiles are one value each: 65,536 covers one-row
# strips of the tallest photo a JPEG can hold (65,500 rows).
TIFF_MAX_TAGS = 4096
TIFF_MAX_DIRECTORIES = 16
TIFF_MAX_VALUES = 65_536
TIFF_STRIP_TAGS = (273, 279, 324, 325)  # StripOffsets, StripByteCounts, TileOffsets, TileByteCounts
TIFF_SUB_DIRECTORIES = (0x8769, 0x8825, 0xA005)  # Exif, GPS, Interoperability
# Bytes per value of each TIFF field type; those not here (bytes, text) cost no Python per value.
TIFF_NUMERIC_SIZES = {3: 2, 4: 4, 5: 8, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
TIFF_SIZES = {1: 1, 2: 1, 6: 1, 7: 1, **TIFF_NUMERIC_SIZES}


class HostileStructure(ValueError):
    """The container holds far more structure than any camera writes."""


@dataclass(frozen=True)
class Layout:
    """What the walk learnt of the picture a decoder reads (a file's first).

    end: where that picture's bytes end. A JPEG ends at its end of image (EOI): what a
    phone appends (a Motion Photo's MP4, an MPO's second picture, padding) is not the photo,
    and every decoder stops there. Other formats: the whole file.
    picture_bytes: the compressed pixel data of what is decoded (JPEG scans, PNG IDAT, the
    first GIF frame's LZW data, the first WebP frame's bitstreams, the first TIFF page's
    strips or tiles): the bytes that can justify its pixels. Metadata (EXIF, XMP, ICC,
    comments, text chunks) and padding justify none.
    """

    end: int
    picture_bytes: int


def check_structure(data: bytes) -> Layout:
    """Raise HostileStructure if the container's structure passes a bound; files cut
    short or malformed otherwise are left to the decoder, which says how."""
    if data.startswith(b"\xff\xd8"):
        return _walk_jpeg(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _walk_png(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _walk_gif(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _walk_webp(data)
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return check_tiff(data)
    return Layout(len(data), len(data))  # BMP: its pixel array is the rest of the file


def check_exif(exif: bytes) -> None:
    """An EXIF block (a TIFF structure, after an optional `Exif\\0\\0`), as a JPEG's APP1,
    a PNG's eXIf or a WebP's EXIF chunk holds it."""
    check_tiff(exif[6:] if exif.startswith(b"Exif\0\0") else exif)


def _walk_jpeg(data: bytes) -> Layout:
    """Segment by segment by their lengths, each scan's entropy-coded data to the marker
    that ends it, up to the end of image: a scan is a SOS segment of this JPEG, not an
    FF DA pair anywhere in the file (an appended video holds thousands)."""
    position, segments, scans, garbage, entropy = 2, 0, 0, 0, 0
    while position + 2 <= len(data):
        if data[position] != 0xFF:
            following = data.find(b"\xff", position)
            if following < 0:
                break
            garbage += following - position
            if garbage > JPEG_MAX_GARBAGE:
                raise HostileStructure(f"the JPEG has more than {JPEG_MAX_GARBAGE} bytes of garbage between segments")
            position = following
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0xD9:
            return Layout(position + 2, entropy)
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        segments += 1
        if segments > JPEG_MAX_SEGMENTS:
            raise HostileStructure(f"the JPEG has more than {JPEG_MAX_SEGMENTS} segments; a camera writes a few dozen")
        if position + 4 > len(data):
            break
        position += 2 + max(struct.unpack_from(">H", data, position + 2)[0], 2)
        if marker == 0xDA:
            scans += 1
            if scans > JPEG_MAX_SCANS:
                raise HostileStructure(
                    f"the JPEG has more than {JPEG_MAX_SCANS} scans; a camera writes at most a few dozen"
                )
            found = _JPEG_SCAN_END.search(data, position)
            scan_end = found.start() if found else len(data)
            entropy += max(scan_end - position, 0)
            position = scan_end
    return Layout(len(data), entropy)  # no end of image: cut short, the decoder says how


def _walk_png(data: bytes) -> Layout:
    position, chunks, pixels = 8, 0, 0
    while position + 8 <= len(data):
        chunks += 1
        if chunks > PNG_MAX_CHUNKS:
            raise HostileStructure(f"the PNG has more than {PNG_MAX_CHUNKS} chunks; a 50 MB photo has a few thousand")
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"IDAT":  # the first frame of an APNG too; fdAT frames are never decoded
            pixels += min(length, len(data) - position - 8)
        elif kind == b"IEND":
            break
        position += 12 + length
    return Layout(len(data), pixels)


def _walk_gif(data: bytes) -> Layout:
    """Extension blocks up to the first frame (bounded), then that frame's LZW data: the
    frame decoded, whose extent also grows the canvas."""
    if len(data) < 13:
        return Layout(len(data), 0)
    position = 13 + _gif_colour_table(data[10])
    blocks = 0
    while position + 1 < len(data) and data[position] == 0x21:  # an extension: label, then sub-blocks
        position += 2
        while position < len(data):
            blocks += 1
            if blocks > GIF_MAX_BLOCKS:
                raise HostileStructure(f"the GIF has more than {GIF_MAX_BLOCKS} extension blocks before its picture")
            size = data[position]
            position += 1 + size
            if size == 0:
                break
    if position + 11 > len(data) or data[position] != 0x2C:  # the trailer, or damage: the decoder's part
        return Layout(len(data), 0)
    width, height, flags = struct.unpack_from("<HHB", data, position + 5)
    position += 10 + _gif_colour_table(flags) + 1  # the descriptor, its colour table, the LZW code size
    most = GIF_DATA_PER_PIXEL * width * height + 255
    lzw, sub_blocks = 0, 0
    while position < len(data) and lzw < most and sub_blocks < GIF_DATA_BLOCKS_COUNTED:
        size = data[position]
        if size == 0:
            break
        lzw += min(size, len(data) - position - 1)
        sub_blocks += 1
        position += 1 + size
    return Layout(len(data), min(lzw, most))


def _gif_colour_table(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _walk_webp(data: bytes) -> Layout:
    """Chunks up to the picture: a still image's bitstream (VP8 or VP8L, after its alpha),
    or an animation's first frame (ANMF)."""
    counted = itertools.count(1)
    pixels = 0
    for kind, start, size in _riff_chunks(data, 12, len(data), counted):
        if kind == b"ANMF":
            return Layout(len(data), _webp_frame(data, start, size, counted))
        if kind in _WEBP_BITSTREAMS:
            pixels += size
            if kind != b"ALPH":
                break
    return Layout(len(data), pixels)


def _webp_frame(data: bytes, start: int, size: int, counted: Iterator[int]) -> int:
    """A frame's bitstreams, at most what its own pixels could use: a 1x1 frame's
    padding justifies no canvas."""
    if size < 16:
        return 0
    width = 1 + int.from_bytes(data[start + 6 : start + 9], "little")
    height = 1 + int.from_bytes(data[start + 9 : start + 12], "little")
    pixels = sum(
        size for kind, _, size in _riff_chunks(data, start + 16, start + size, counted) if kind in _WEBP_BITSTREAMS
    )
    return min(pixels, WEBP_DATA_PER_PIXEL * width * height + 4096)


def _riff_chunks(data: bytes, position: int, end: int, counted: Iterator[int]) -> Iterator[tuple[bytes, int, int]]:
    """(kind, payload start, payload size clipped to the data) of each chunk in [position, end)."""
    end = min(end, len(data))
    while position + 8 <= end:
        if next(counted) > WEBP_MAX_CHUNKS:
            raise HostileStructure(f"the WebP has more than {WEBP_MAX_CHUNKS} chunks before its picture")
        kind, size = struct.unpack_from("<4sI", data, position)
        yield kind, position + 8, min(size, end - position - 8)
        position += 8 + size + (size & 1)


def check_tiff(data: bytes) -> Layout:
    """The first directory (the page decoded), the directories it points to (Exif, GPS,
    Interoperability) and the next one (a second page, or an EXIF thumbnail). The first
    page's strips or tiles are its picture bytes (without them: the whole file)."""
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return Layout(len(data), len(data))
    endian = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(endian + "H", data, 2)[0] == 43
    if big:
        if len(data) < 16:
            return Layout(len(data), len(data))
        first = struct.unpack_from(endian + "Q", data, 8)[0]
    else:
        first = struct.unpack_from(endian + "I", data, 4)[0]
    layout = _BigTiff(endian) if big else _Tiff(endian)
    pending, seen, strips = [first], set(), None
    while pending:
        offset = pending.pop()
        if offset in seen or not 0 < offset < len(data):
            continue
        seen.add(offset)
        if len(seen) > TIFF_MAX_DIRECTORIES:
            raise HostileStructure(f"the TIFF structure has more than {TIFF_MAX_DIRECTORIES} linked directories")
        pointed, found = layout.directory(data, offset, first=len(seen) == 1)
        pending += pointed
        strips = strips or found
    return Layout(len(data), _covered(strips, len(data)) if strips else len(data))


def _covered(ranges: list[tuple[int, int]], size: int) -> int:
    """The bytes of the file the (offset, length) ranges cover, each once: strips that all
    point at the same bytes (one padding tag's, say) count them once."""
    covered = reach = 0
    for start, length in sorted(ranges):
        start, end = max(start, reach), min(start + length, size)
        if end > start:
            covered += end - start
            reach = end
    return covered


class _Tiff:
    count_format, entry_format, next_format = "H", "HHI4s", "I"

    def __init__(self, endian: str):
        self.endian = endian
        self.count = struct.Struct(endian + self.count_format)
        self.entry = struct.Struct(endian + self.entry_format)
        self.next = struct.Struct(endian + self.next_format)
        self.offset = struct.Struct(endian + self.next_format)

    def directory(self, data: bytes, offset: int, first: bool) -> tuple[list[int], list[tuple[int, int]]]:
        """The directories this one points to, once its tags are checked; for the first,
        its strips' or tiles' (offset, length) pairs too."""
        if offset + self.count.size > len(data):
            return [], []
        (tags,) = self.count.unpack_from(data, offset)
        if tags > TIFF_MAX_TAGS:
            raise HostileStructure(f"a TIFF directory has {tags} tags; cameras write a few dozen")
        pointed, strips = [], {}
        start = offset + self.count.size
        for index in range(tags):
            position = start + index * self.entry.size
            if position + self.entry.size > len(data):
                return pointed, []
            tag, kind, count, value = self.entry.unpack_from(data, position)
            if kind in TIFF_NUMERIC_SIZES and count > TIFF_MAX_VALUES:
                what = "strips or tiles" if tag in TIFF_STRIP_TAGS else "values in one tag"
                raise HostileStructure(f"the TIFF has {count} {what}; the limit is {TIFF_MAX_VALUES}")
            if tag in TIFF_SUB_DIRECTORIES and kind in (4, 13, 16, 18) and count == 1:
                pointed.append(self.offset.unpack_from(value)[0])
            if first and tag in TIFF_STRIP_TAGS:
                strips[tag] = self.values(data, kind, count, value)
        end = start + tags * self.entry.size
        if first and end + self.next.size <= len(data):
            pointed.append(self.next.unpack_from(data, end)[0])
        offsets, lengths = strips.get(273) or strips.get(324), strips.get(279) or strips.get(325)
        return pointed, list(zip(offsets, lengths, strict=False)) if offsets and lengths else []  # unequal: damage

    def values(self, data: bytes, kind: int, count: int, field: bytes) -> tuple[int, ...]:
        """A strip tag's values (SHORT, LONG or LONG8): in the entry itself if they fit,
        else at the offset it holds; none if they lie outside the data."""
        code = {3: "H", 4: "I", 16: "Q"}.get(kind)
        if code is None:
            return ()
        size = struct.calcsize(code) * count
        source, at = (field, 0) if size <= len(field) else (data, self.offset.unpack_from(field)[0])
        if at + size > len(source):
            return ()
        return struct.unpack_from(f"{self.endian}{count}{code}", source, at)


class _BigTiff(_Tiff):
    count_format, entry_format, next_format = "Q", "HHQ8s", "Q"
