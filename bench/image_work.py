"""The service's work on the picture itself (decode, draw, encode) on a big photo,
against the least any service must do: OpenCV's bare decode and encode."""

from __future__ import annotations

import cv2
import numpy as np

from app.pipeline import PhotoResult, render
from app.pipeline.photo import annotated_jpeg
from app.settings import Settings
from app.vision.detection import Detection
from app.vision.images import decode_image

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
    """What /invocations does around inference: the pipeline's own decode, picture and
    JSON rendering (app/pipeline), without the detector."""
    image = decode_image(jpeg, MAX_PIXELS)
    height, width = image.shape[:2]
    picture = annotated_jpeg(image, detections, counts, None, JPEG_QUALITY)
    result = PhotoResult(None, width, height, tuple(detections), counts, picture=picture)
    render.api_json(result)
