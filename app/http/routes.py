"""The HTTP routes: parse, call the detector, render. No engine is imported here."""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path

from flask import Blueprint, Response, current_app, g, jsonify, request

from app.inference.detector import Detector
from app.vision.annotate import annotate
from app.vision.autocrop import detect_in_sample, outline
from app.vision.detection import Detection
from app.vision.images import encode_jpeg, open_photo
from app.vision.postprocess import count_by_class

from . import metrics
from .errors import NotAcceptable, NotReady
from .metrics import Stages
from .openapi import openapi_document
from .request_log import add_fields
from .request_parsing import parse_invocation, parse_upload

bp = Blueprint("service", __name__)
PRODUCED_TYPES = ("application/json", "image/jpeg")


def _detector() -> Detector:
    detector = current_app.extensions.get("detector")
    if detector is None:
        raise NotReady("the model is still loading; retry shortly")
    return detector


@bp.get("/")
def index():
    """The web page: pick a photo, see it annotated and counted (static, works offline)."""
    return Response(_index_html(), mimetype="text/html")


@functools.cache
def _index_html() -> bytes:
    return (Path(__file__).parent / "static" / "index.html").read_bytes()


@bp.get("/ping")
@bp.get("/ping/")
def ping():
    _detector()
    return jsonify({"data": "pong!"})


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


@bp.get("/model")
def model_info():
    detector = _detector()
    network = detector.model.network
    return jsonify(
        {
            "classes": list(detector.class_names),
            "network": {"width": network.width, "height": network.height, "letter_box": network.letter_box},
            "engine": detector.engine.name,
            "device": detector.engine.device,
            "precision": detector.engine.precision,
            "files": detector.file_hashes,
            "load_seconds": round(detector.load_seconds, 3),
        }
    )


@bp.get("/execution-parameters")
def execution_parameters():
    """SageMaker batch transform asks this before sending records."""
    settings = current_app.extensions["settings"]
    return jsonify(
        {
            # What the workers take without a refusal: the photos worked on and queued.
            "MaxConcurrentTransforms": settings.workers * (settings.active_photos + settings.queue_depth),
            "BatchStrategy": "SINGLE_RECORD",
            "MaxPayloadInMB": max(1, int(settings.max_upload_mb)),
        }
    )


@bp.post("/invocations")
def invocations():
    return _answer(parse_invocation)


@bp.post("/upload")
def upload():
    """The original service's endpoint (deprecated): same answer, its request shape."""
    return _answer(parse_upload)


def _answer(parse):
    detector = _detector()
    settings = current_app.extensions["settings"]
    # JSON by default; Accept: image/jpeg asks for the annotated picture itself.
    produce = request.accept_mimetypes.best_match(PRODUCED_TYPES) if request.accept_mimetypes else PRODUCED_TYPES[0]
    if produce is None:
        raise NotAcceptable(f"this service answers {' or '.join(PRODUCED_TYPES)}, not {request.headers['Accept']}")
    deadline = g.deadline  # set where the photo entered the queue (app/http/admission.py)
    stages = Stages()
    invocation = parse(request, detector.class_names)
    photo = open_photo(invocation.image, settings.max_image_pixels)  # the header only: size checked
    body: dict = {}
    picture = None
    # The decoded photo and everything made from it exist only while its pixels are held.
    with current_app.extensions["pixel_budget"].hold(photo.pixels, deadline):
        image = photo.decode()
        stages.done("decode")
        if invocation.auto_crop:
            detections, crop = detect_in_sample(detector, image, invocation.options, deadline)
        else:
            detections, crop = detector.detect(image, invocation.options, deadline), None
        stages.done("inference")
        counts = count_by_class(detections, detector.class_names)
        if invocation.return_image or produce == "image/jpeg":
            annotated = annotate(image, detections, counts, channels="BGR")  # what the JPEG encoder takes
            if crop:
                outline(annotated, crop)
            stages.done("annotate")
            picture = encode_jpeg(annotated, settings.jpeg_quality, channels="BGR")
            stages.done("encode")
            body["img"] = base64.b64encode(picture).decode("ascii")
            del annotated
        height, width = image.shape[:2]
        del image
    body["stat"] = counts
    if invocation.include_detections:
        body["detections"] = [_detection_json(d) for d in detections]
    if invocation.auto_crop:
        body["crop"] = crop.as_list() if crop else None
        if crop is None:
            body["crop_note"] = (
                "no sample region found (nothing saturated, or it fills the frame): counted the whole photo"
            )
    stages.observe()
    metrics.count_objects(counts)
    add_fields(
        filename=invocation.filename,
        width=width,
        height=height,
        objects=len(detections),
        counts={name: count for name, count in counts.items() if count},
        stage_ms={stage: round(seconds * 1000, 1) for stage, seconds in stages.seconds.items()},
    )
    if produce == "image/jpeg":
        # The counts travel in a header, for clients that only want the picture.
        stat = json.dumps({name: count for name, count in counts.items() if count}, separators=(",", ":"))
        return Response(picture, content_type="image/jpeg", headers={"X-Stat": stat})
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
