"""The HTTP routes: parse, call the detector, render. No engine is imported here."""

from __future__ import annotations

import base64

from flask import Blueprint, Response, current_app, jsonify, request

from . import metrics
from .annotate import annotate
from .detection import Detection
from .detector import Detector
from .errors import NotReady
from .images import decode_image, encode_jpeg
from .metrics import Stages
from .postprocess import count_by_class
from .request_log import add_fields
from .request_parsing import parse_invocation

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
    stages = Stages()
    invocation = parse_invocation(request, detector.class_names)
    image = decode_image(invocation.image, settings.max_image_pixels)
    stages.done("decode")
    detections = detector.detect(image, invocation.options)
    stages.done("inference")
    counts = count_by_class(detections, detector.class_names)
    body: dict = {}
    if invocation.return_image:
        annotated = annotate(image, detections, counts)
        stages.done("annotate")
        body["img"] = base64.b64encode(encode_jpeg(annotated, settings.jpeg_quality)).decode("ascii")
        stages.done("encode")
    body["stat"] = counts
    if invocation.include_detections:
        body["detections"] = [_detection_json(d) for d in detections]
    stages.observe()
    metrics.count_objects(counts)
    add_fields(
        filename=invocation.filename,
        width=image.shape[1],
        height=image.shape[0],
        objects=len(detections),
        counts={name: count for name, count in counts.items() if count},
        stage_ms={stage: round(seconds * 1000, 1) for stage, seconds in stages.seconds.items()},
    )
    return jsonify(body)


@bp.get("/metrics")
def prometheus_metrics():
    payload, content_type = metrics.render()
    return Response(payload, content_type=content_type)


def _detection_json(detection: Detection) -> dict:
    return {
        "class": detection.class_name,
        "confidence": round(detection.confidence, 4),
        "box": [round(v, 1) for v in detection.box],
    }
