"""Photos in and out: decode whatever a phone or microscope camera produces into
upright 8-bit RGB, and encode the annotated result as JPEG.

Only the formats cameras and microscopes write are read, each with its size taken from
the header before any pixel is decoded (open_photo); the work a photo can cause is
bounded by its pixel count and, for JPEG, its number of scans. Damage a decoder only
warns about (a premature end, corrupt data) is an error, not a grey photo counted.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from .structure import HostileStructure, check_exif, check_structure

# Pillow's own bomb guard warns or raises from global state; the limit is a setting
# here and is checked from the header, before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None
JPEG_MAX_SIDE = 65500  # the JPEG format's limit: the annotated picture could not be encoded
ORIENTATION_TAG = 0x0112
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The same turns on a decoded array (cv2 rotates and flips in one pass).
ARRAY_ORIENTATIONS = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: cv2.transpose,
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
ANNOTATED_SUFFIX = ".annotated.jpg"  # the count command's pictures: an output, never a photo to count
EXIF_IFD = 0x8769
# DateTimeOriginal (the shutter), else DateTimeDigitized, in the Exif IFD; else DateTime of
# the main IFD, where microscope cameras' TIFFs keep it. The camera's local time, no zone.
EXIF_DATE_TAGS = (36867, 36868)
MAIN_DATE_TAG = 0x0132
EXIF_DATE_FORMAT = "%Y:%m:%d %H:%M:%S"
# Pillow's names of what cameras, phones and microscopes write (its JPEG reader also
# opens MPO, a phone's JPEG with a second picture inside). Pillow knows some 40
# formats; ICO and ICNS decode their biggest picture before its size can be checked,
# DDS crashes on odd flags: only these readers ever look at the bytes.
PHOTO_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF")
FORMAT_NAMES = "JPEG, PNG, TIFF, WebP, BMP or GIF"
FAST_JPEG_COLOURSPACES = ("YCbCr", "Gray")
# Decompression bombs that stay under the pixel limit: pixels per byte of compressed
# pixel data (structure.py's picture bytes: JPEG scans, PNG IDAT, the first GIF or WebP
# frame's data, TIFF strips; never metadata or padding, which a client adds at will: an
# 81 MP GIF of a 1x1 frame padded with 84 KB of comments held 958 a byte of file). Real
# camera and microscope photos hold 2-40 (data/: 0.7-3.1; the job's stained drop on a
# white dish: 8.1 as its phone wrote it, 36 re-encoded as WebP q80); a flat 12 MP frame with
# no sensor noise at all reaches 64 as JPEG, 284 as PNG, 560 as lossy WebP. A 35-byte
# GIF that grows to 9001x9001 holds 40 million. Photos up to a megapixel cost little
# whatever their bytes, and are never refused for it.
MAX_PIXELS_PER_BYTE = 1000
PIXELS_PER_BYTE_FROM = 1_000_000


class InvalidImage(Exception):
    """The bytes are not a readable image."""


class DamagedImage(InvalidImage):
    """The image is of a known format but its data is cut short or corrupt."""


class DecompressionBomb(InvalidImage):
    """The image promises far more pixels than its bytes could hold in a real photo."""


class ImageTooLarge(Exception):
    """The image has more pixels than the service accepts."""


@dataclass(frozen=True)
class OpenedPhoto:
    """A photo whose header was read and checked; no pixel decoded yet. `data` is the
    picture decoded: a JPEG's bytes end at its end of image."""

    data: bytes
    image: Image.Image
    format: str

    @property
    def pixels(self) -> int:
        return self.image.size[0] * self.image.size[1]

    @property
    def taken(self) -> datetime | None:
        """When the photo was taken, from its EXIF; None without a readable date. Read it
        after decode(): Pillow reads a PNG's EXIF only by loading its pixels."""
        return _taken(self.image)

    def decode(self) -> np.ndarray:
        """HxWx3 uint8 RGB, EXIF orientation applied; the first page or frame."""
        try:
            if self.format in ("JPEG", "MPO"):
                return _decode_jpeg(self.data, _orientation(self.image))
            self.image.load()
            _check_exif(self.image)
            return _to_rgb(_upright(self.image))
        except InvalidImage:
            raise
        except Exception as exc:  # any decoder's error on hostile data is the photo's fault
            raise DamagedImage(f"the image is damaged or truncated ({_reason(exc)})") from None


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Bytes -> HxWx3 uint8 RGB, EXIF orientation applied; the first page of a TIFF."""
    return open_photo(data, max_pixels).decode()


def open_photo(data: bytes, max_pixels: int) -> OpenedPhoto:
    """Read and check the header: structure (JPEG scans among it), format, pixel count,
    sides, pixels per byte of pixel data, EXIF; the size checked is the one the decoder
    will make (a GIF's canvas grown to hold its first frame, an animated WebP's canvas)."""
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    try:
        layout = check_structure(data)
    except HostileStructure as exc:
        raise DamagedImage(str(exc)) from None
    try:
        image = Image.open(io.BytesIO(data), formats=PHOTO_FORMATS)
    except UnidentifiedImageError:
        raise InvalidImage(f"the data is not an image format this service reads ({FORMAT_NAMES})") from None
    except Exception as exc:  # a recognised format whose header is broken
        raise DamagedImage(f"the image is damaged or truncated ({_reason(exc)})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} pixels, more than the limit of {max_pixels / 1e6:g} megapixels"
        )
    if max(width, height) > JPEG_MAX_SIDE:
        raise ImageTooLarge(f"the image is {width}x{height} pixels; the annotated JPEG allows {JPEG_MAX_SIDE} a side")
    if min(width, height) < 1:
        raise DamagedImage(f"the image header says {width}x{height} pixels")
    _check_density(width * height, layout.picture_bytes, len(data))
    _check_exif(image)
    return OpenedPhoto(data[: layout.end] if layout.end < len(data) else data, image, image.format)


def _check_density(pixels: int, picture_bytes: int, size: int) -> None:
    if pixels > PIXELS_PER_BYTE_FROM and pixels > MAX_PIXELS_PER_BYTE * picture_bytes:
        raise DecompressionBomb(
            f"the image promises {pixels / 1e6:.3g} megapixels from {picture_bytes} bytes of pixel data "
            f"(of {size} in the file), {pixels // max(picture_bytes, 1)} pixels a byte; a real photo holds "
            f"at most {MAX_PIXELS_PER_BYTE}: refused as a decompression bomb"
        )


def _check_exif(image: Image.Image) -> None:
    """The EXIF block Pillow found, bounded before getexif() walks it. A PNG whose eXIf
    follows its pixels shows it only once loaded: decode() checks it again."""
    exif = image.info.get("exif")
    if isinstance(exif, bytes):
        try:
            check_exif(exif)
        except HostileStructure as exc:
            raise DamagedImage(f"the EXIF block: {exc}") from None


def _decode_jpeg(data: bytes, orientation: int) -> np.ndarray:
    """libjpeg-turbo straight into RGB, strict: a warning (premature end, corrupt data)
    is damage, where Pillow and OpenCV fill the rest with grey. Twice as fast as
    Pillow's decode plus its copy into numpy on a 12 MP photo."""
    try:
        _, _, colourspace, _ = simplejpeg.decode_jpeg_header(data)
        if colourspace not in FAST_JPEG_COLOURSPACES:  # CMYK and YCCK: Pillow converts them
            image = Image.open(io.BytesIO(data))
            image.load()
            return _to_rgb(_upright(image))
        rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as exc:
        raise DamagedImage(f"the image is damaged or truncated ({_reason(exc)})") from None
    turn = ARRAY_ORIENTATIONS.get(orientation)
    return turn(rgb) if turn else rgb


def _reason(error: Exception) -> str:
    """The decoder's own words, cut short: they end up in a client's error message."""
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag. Only the tag is read: exif_transpose would also rewrite
    the EXIF block, which fails on the malformed ones phones sometimes write."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
        return value if isinstance(value, int) else 1
    except Exception:  # any unreadable EXIF: no known orientation
        return 1


def _taken(image: Image.Image) -> datetime | None:
    try:
        main = image.getexif()
        tags = main.get_ifd(EXIF_IFD)
        values = [tags.get(tag) for tag in EXIF_DATE_TAGS] + [main.get(MAIN_DATE_TAG)]
    except Exception:  # any unreadable EXIF: no known date
        return None
    for value in values:
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if not isinstance(value, str):
            continue
        try:  # cameras pad with NULs or blanks; an unset clock writes "0000:00:00 00:00:00"
            return datetime.strptime(value.strip("\x00 ")[:19], EXIF_DATE_FORMAT)
        except ValueError:
            continue
    return None


def _upright(image: Image.Image) -> Image.Image:
    method = ORIENTATIONS.get(_orientation(image))
    return image.transpose(method) if method is not None else image


def photos_in(paths: list[Path], skip: Iterable[Path] = (), hidden: list[Path] | None = None) -> list[Path]:
    """The photos in folders (recursively, by suffix) and the files named. In folders,
    annotated pictures (*.annotated.jpg) and whatever lies in or under a `skip` path (the
    count command's own outputs) are left out, so an output is never read as an input;
    so are hidden files and folders (a name starting with "."): macOS leaves a `._x.jpg`
    of resource data beside each photo copied to a USB stick, and `.thumbnails/` hold
    copies. Those left out for being hidden are added to `hidden` when given."""
    skipped = [Path(os.path.realpath(path)) for path in skip]
    found = []
    for path in paths:
        if path.is_dir():
            photos = sorted(p for p in path.rglob("*") if _is_photo(p) and not _under(p, skipped))
            seen = [p for p in photos if not is_hidden(p.relative_to(path))]
            if hidden is not None:
                hidden += [p for p in photos if is_hidden(p.relative_to(path))]
            found += seen
        else:
            found.append(path)  # named explicitly: tried even with an odd suffix
    return found


def is_hidden(relative: Path) -> bool:
    """A file or folder name starting with ".", on the way from the folder counted."""
    return any(part.startswith(".") for part in relative.parts)


def _is_photo(path: Path) -> bool:
    name = path.name.lower()
    return path.suffix.lower() in PHOTO_SUFFIXES and not name.endswith(ANNOTATED_SUFFIX) and path.is_file()


def _under(path: Path, folders: list[Path]) -> bool:
    if not folders:
        return False
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(folder) for folder in folders)


def encode_jpeg(image: np.ndarray, quality: int = 90, channels: str = "RGB") -> bytes:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if channels == "RGB" else image
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit greyscale (microscope cameras): scale to 8 bits instead of clipping.
        grey = (np.asarray(image, dtype=np.float32) / 257.0).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, np.newaxis], 3, axis=2))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas are shown as the white a viewer shows, not as hidden colours.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))
