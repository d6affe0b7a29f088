"""Photos in and out: decode whatever a phone or microscope camera produces into
upright 8-bit RGB, and encode the annotated result as JPEG."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

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
JPEG_END = b"\xff\xd9"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}


class InvalidImage(Exception):
    """The bytes are not a readable image."""


class ImageTooLarge(Exception):
    """The image has more pixels than the service accepts."""


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Bytes -> HxWx3 uint8 RGB, EXIF orientation applied; the first page of a TIFF."""
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"the image is {width}x{height} pixels, more than the limit of {max_pixels / 1e6:g} megapixels"
            )
        if max(width, height) > JPEG_MAX_SIDE:
            raise ImageTooLarge(
                f"the image is {width}x{height} pixels; the annotated JPEG allows {JPEG_MAX_SIDE} a side"
            )
        if image.format == "JPEG" and image.mode == "RGB" and data.endswith(JPEG_END):
            fast = _decode_colour_jpeg(data, (height, width), _orientation(image))
            if fast is not None:
                return fast
        return _to_rgb(_upright(image))
    except UnidentifiedImageError:
        raise InvalidImage("the data is not an image format this service reads (JPEG, PNG, TIFF, WebP, BMP)") from None
    except (OSError, SyntaxError, ValueError) as exc:  # what Pillow raises on damaged data
        raise InvalidImage(f"the image is damaged or truncated ({exc})") from None


def _decode_colour_jpeg(data: bytes, size: tuple[int, int], orientation: int) -> np.ndarray | None:
    """The common case, a complete colour JPEG, decoded by libjpeg straight into RGB:
    half the time of Pillow's decode plus its copy into numpy on a 12 MP photo. A
    truncated file (no end marker) never comes here: Pillow reports it as damaged."""
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if rgb is None or rgb.shape[:2] != size:
        return None
    turn = ARRAY_ORIENTATIONS.get(orientation)
    return turn(rgb) if turn else rgb


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag. Only the tag is read: exif_transpose would also rewrite
    the EXIF block, which fails on the malformed ones phones sometimes write."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
        return value if isinstance(value, int) else 1
    except Exception:  # any unreadable EXIF: no known orientation
        return 1


def _upright(image: Image.Image) -> Image.Image:
    method = ORIENTATIONS.get(_orientation(image))
    return image.transpose(method) if method is not None else image


def photos_in(paths: list[Path]) -> list[Path]:
    """The photos in folders (recursively, by suffix) and the files named."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
        else:
            found.append(path)  # named explicitly: tried even with an odd suffix
    return found


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
