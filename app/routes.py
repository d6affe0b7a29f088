"""The HTTP routes: parse, call the detector, render. No engine is imported here."""

from __future__ import annotations

import base64
import logging
import time

from flask import Blueprint, current_app, g, jsonify, request

from .annotate import annotate
from .detection import Detection
from .detector import Detector
from .errors import NotReady
from .images import decode_image, encode_jpeg
from .postprocess import count_by_class
from .request_parsing import parse_invocation

log = logging.getLogger(__name__)
bp = Blueprint("service", __name__)


def _detector() -> Detector:
    detector = current_app.extensions.get("detector")
    if detector is None:
        raise NotReady("the model is still loading; retry shortly")
    return detector


@bp.get("/ping")
@bp.get("/ping/")
def ping():
    _detector()
    return jsonify({"data": "pong!"})


@bp.post("/invocations")
def invocations():
    detector = _detector()
    settings = current_app.extensions["settings"]
    timings = {}
    started = time.perf_counter()
    invocation = parse_invocation(request, detector.class_names)
    image = decode_image(invocation.image, settings.max_image_pixels)
    timings["decode"] = time.perf_counter()
    detections = detector.detect(image, invocation.options)
    timings["inference"] = time.perf_counter()
    counts = count_by_class(detections, detector.class_names)
    body: dict = {}
    if invocation.return_image:
        picture = encode_jpeg(annotate(image, detections, counts), settings.jpeg_quality)
        body["img"] = base64.b64encode(picture).decode("ascii")
        timings["annotate"] = time.perf_counter()
    body["stat"] = counts
    if invocation.include_detections:
        body["detections"] = [_detection_json(d) for d in detections]
    log.info(
        "request %s file=%s size=%dx%d bytes=%d objects=%d %s",
        g.request_id,
        invocation.filename or "-",
        image.shape[1],
        image.shape[0],
        len(invocation.image),
        len(detections),
        " ".join(_durations(started, timings)),
    )
    return jsonify(body)


def _detection_json(detection: Detection) -> dict:
    return {
        "class": detection.class_name,
        "confidence": round(detection.confidence, 4),
        "box": [round(v, 1) for v in detection.box],
    }


def _durations(started: float, marks: dict[str, float]):
    previous = started
    for name, mark in marks.items():
        yield f"{name}_ms={(mark - previous) * 1000:.1f}"
        previous = mark
