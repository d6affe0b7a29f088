"""Photos in and out: decode whatever a phone or microscope camera produces into
upright 8-bit RGB, and encode the annotated result as JPEG."""

from __future__ import annotations

import io

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
        return _to_rgb(_upright(image))
    except UnidentifiedImageError:
        raise InvalidImage("the data is not an image format this service reads (JPEG, PNG, TIFF, WebP, BMP)") from None
    except (OSError, SyntaxError, ValueError) as exc:  # what Pillow raises on damaged data
        raise InvalidImage(f"the image is damaged or truncated ({exc})") from None


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation. Only the tag is read: exif_transpose would also
    rewrite the EXIF block, which fails on the malformed ones phones sometimes write."""
    try:
        method = ORIENTATIONS.get(image.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # any unreadable EXIF (or a tag of the wrong type): no known orientation
        method = None
    return image.transpose(method) if method is not None else image


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
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
