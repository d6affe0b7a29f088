"""Photos as phones write them, made on the fly (none is committed): a JPEG of a
phone's size, a Motion Photo (Google's and Samsung's: the JPEG with its MP4 appended), an
MPO, a JPEG with trailing bytes. What follows a JPEG's end is not the photo: a decoder
stops at the JPEG's end of image, and the service must too.

The layouts follow what the phones write:
- Google (Pixel, 2018-2020: "MVIMG_*.jpg"): XMP `GCamera:MicroVideo="1"`,
  `GCamera:MicroVideoOffset` = the video's length, counted back from the file's end.
- Google's Motion Photo format 1.0 (2021 on: "PXL_*.MP.jpg"): XMP `GCamera:MotionPhoto="1"`
  and a `Container:Directory` of items (primary JPEG, then `video/mp4` with its
  `Item:Length`); the video follows the JPEG.
- Samsung (Galaxy, "Motion photo" on): after the JPEG, `MotionPhoto_Data` then the MP4, and
  a Samsung Extended Format trailer: an `SEFH` directory of the appended items and
  `SEFT` closing the file.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOG = ROOT / "data" / "dog.jpg"
PHONE_SIZE = (4032, 3024)  # 12 MP, 4:3: what most phones' main camera writes
XMP_ID = b"http://ns.adobe.com/xap/1.0/\0"


def phone_jpeg(size: tuple[int, int] = PHONE_SIZE, quality: int = 92, icc_profile: bytes | None = None) -> bytes:
    """dog.jpg at a phone's size with a sensor's noise (a flat enlargement would compress
    like no photo does), with EXIF, as a phone's JPEG: a few MB."""
    with Image.open(DOG) as dog:
        enlarged = np.asarray(dog.convert("RGB").resize(size, Image.Resampling.BILINEAR))
    noise = np.random.default_rng(12).integers(0, 21, enlarged.shape, dtype=np.uint8)
    noisy = cv2.subtract(cv2.add(enlarged, noise), (10, 10, 10, 0))  # +-10, saturated
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Google", "Pixel 7"  # Make, Model
    exif.get_ifd(0x8769)[36867] = "2026:05:14 09:30:00"  # DateTimeOriginal
    buffer = io.BytesIO()
    params = {"quality": quality, "exif": exif}
    if icc_profile is not None:
        params["icc_profile"] = icc_profile
    Image.fromarray(noisy).save(buffer, "JPEG", **params)
    return buffer.getvalue()


def mp4_like(size: int, seed: int = 7) -> bytes:
    """`size` bytes laid out as an MP4 (ftyp, mdat, moov boxes) whose media data is random
    bytes with thousands of JPEG markers in it (FF D8 start, FF DA scan, FF D9 end): what
    compressed video holds by chance (one pair in 65,536 bytes) and more."""
    rng = np.random.default_rng(seed)
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41")
    moov = _box(b"moov", _box(b"mvhd", bytes(100)))
    media = bytearray(rng.integers(0, 256, max(size - len(ftyp) - len(moov) - 8, 0), dtype=np.uint8).tobytes())
    for at in range(0, len(media) - 4, 997):  # about 6,000 markers a megabyte
        media[at : at + 2] = (b"\xff\xda", b"\xff\xd8", b"\xff\xd9", b"\xff\xc0")[(at // 997) % 4]
    return ftyp + _box(b"mdat", bytes(media)) + moov


def google_motion_photo(jpeg: bytes, video: bytes, version: int = 1) -> bytes:
    """The JPEG with its video appended and an XMP packet naming it: version 1 is the
    Motion Photo format (Container directory with Item:Length), 0 the older MicroVideo
    (GCamera:MicroVideoOffset)."""
    if version == 0:
        fields = (
            'GCamera:MicroVideo="1" GCamera:MicroVideoVersion="1" '
            f'GCamera:MicroVideoOffset="{len(video)}" GCamera:MicroVideoPresentationTimestampUs="1266731">'
        )
        directory = ""
    else:
        fields = (
            'GCamera:MotionPhoto="1" GCamera:MotionPhotoVersion="1" '
            'GCamera:MotionPhotoPresentationTimestampUs="968644">'
        )
        directory = (
            "<Container:Directory><rdf:Seq>"
            '<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/jpeg" Item:Semantic="Primary"'
            ' Item:Length="0" Item:Padding="0"/></rdf:li>'
            '<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="video/mp4" Item:Semantic="MotionPhoto"'
            f' Item:Length="{len(video)}" Item:Padding="0"/></rdf:li>'
            "</rdf:Seq></Container:Directory>"
        )
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 5.1.0-jc003">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:GCamera="http://ns.google.com/photos/1.0/camera/"'
        ' xmlns:Container="http://ns.google.com/photos/1.0/container/"'
        ' xmlns:Item="http://ns.google.com/photos/1.0/container/item/" '
        f"{fields}{directory}</rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()
    return with_segment(jpeg, 0xE1, XMP_ID + xmp) + video


def samsung_motion_photo(jpeg: bytes, video: bytes) -> bytes:
    """The JPEG, then an SEF data block (its type, `MotionPhoto_Data` and the video),
    then the SEF trailer: an SEFH directory (each entry: type, offset back from SEFH,
    length), its size, and SEFT."""
    name = b"MotionPhoto_Data"
    item = struct.pack("<HHI", 0, 0x0A30, len(name)) + name + video  # type, the name's length, name, data
    header = b"SEFH" + struct.pack("<II", 106, 1) + struct.pack("<HHII", 0, 0x0A30, len(item), len(item))
    return jpeg + item + header + struct.pack("<I", len(header)) + b"SEFT"


def mpo(first: Image.Image, second: Image.Image) -> bytes:
    """A multi-picture file (stereo cameras, some phones' depth or gain maps): JPEGs back
    to back, indexed by the first one's APP2 MPF segment; the first is the photo."""
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second], quality=90)
    return buffer.getvalue()


def with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """The JPEG with one more segment after its start of image (and its APP0/APP1 ones)."""
    at = 2
    while jpeg[at] == 0xFF and jpeg[at + 1] in (0xE0, 0xE1):
        at += 2 + struct.unpack_from(">H", jpeg, at + 2)[0]
    return jpeg[:at] + b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload + jpeg[at:]


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 8) + kind + payload
