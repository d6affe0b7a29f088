"""The service's work on the picture itself (decode, draw, encode) on a big photo,
against the least any service must do: OpenCV's bare decode and encode."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from app.settings import Settings
from app.vision.annotate import annotate
from app.vision.detection import Detection
from app.vision.images import decode_image, encode_jpeg

JPEG_QUALITY = 90  # the service's default
MAX_PIXELS = int(Settings.max_image_megapixels * 1_000_000)  # the service's default limit


def resized_jpeg(photo: bytes, size: tuple[int, int]) -> bytes:
    """The photo scaled to width x height, as a camera would deliver it: a JPEG."""
    image = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    ok, encoded = cv2.imencode(".jpg", cv2.resize(image, size), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"cannot encode a {size[0]}x{size[1]} JPEG")
    return encoded.tobytes()


def bare_decode_encode(jpeg: bytes) -> None:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


def service_image_work(jpeg: bytes, detections: list[Detection], counts: dict[str, int]) -> None:
    """What /invocations does around inference, as app/http/routes.py does it."""
    image = decode_image(jpeg, MAX_PIXELS)
    annotated = annotate(image, detections, counts, channels="BGR")
    base64.b64encode(encode_jpeg(annotated, JPEG_QUALITY, channels="BGR")).decode("ascii")
