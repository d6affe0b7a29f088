"""The HTTP routes: parse, run the photo pipeline, render. No engine is imported here."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.datastructures import MIMEAccept

from app import __version__
from app.inference.detector import Detector
from app.pipeline import PhotoLimits, process_photo, render
from app.vision.images import PHOTO_SUFFIXES

from . import metrics
from .errors import NotAcceptable, NotReady
from .openapi import openapi_document
from .request_log import add_fields
from .request_parsing import parse_invocation, parse_upload

bp = Blueprint("service", __name__)


def _detector() -> Detector:
    detector = current_app.extensions.get("detector")
    if detector is None:
        raise NotReady("the model is still loading; retry shortly")
    return detector


@bp.get("/")
def index():
    """The web page: pick a photo, see it annotated and counted (static, works offline)."""
    return Response(_index_html(), mimetype="text/html")


PHOTO_SUFFIXES_MARK = b"__PHOTO_SUFFIXES__"


@functools.cache
def _index_html() -> bytes:
    # The photo types are one list (app/vision/images.py, what `count` takes from a
    # folder): the page's picker and its intake read them from here, never a list of their own.
    page = (Path(__file__).parent / "static" / "index.html").read_bytes()
    return page.replace(PHOTO_SUFFIXES_MARK, ",".join(sorted(PHOTO_SUFFIXES)).encode("ascii"))


# Browsers ask for /favicon.ico whatever the page links: a dish with three organisms.
FAVICON_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="14" fill="#fbe9c8"'
    b' stroke="#1f6feb" stroke-width="3"/><g fill="#8a4b12"><ellipse cx="11" cy="12" rx="3.5" ry="2.2"/>'
    b'<ellipse cx="20" cy="14" rx="2.2" ry="3.5"/><ellipse cx="14" cy="21" rx="3.5" ry="2.2"/></g></svg>'
)


@bp.get("/favicon.ico")
def favicon():
    return Response(FAVICON_SVG, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


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
            "selection": detector.engine.selection,
            "engine_build": detector.engine.build,
            "files": detector.file_hashes,
            "load_seconds": round(detector.load_seconds, 3),
            **current_app.extensions["default_threshold"].as_json(),
            "version": __version__,
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
    return _answer(parse_upload, original=True)


def _answer(parse, original: bool = False):
    """original: /upload's answer, with no key the original service did not give."""
    detector = _detector()
    settings = current_app.extensions["settings"]
    # The model's threshold (DEFAULT_THRESHOLD, or evaluate --save-threshold's) where none is asked.
    defaults = {"threshold": current_app.extensions["default_threshold"].value}
    invocation = parse(request, detector.class_names, defaults)
    add_fields(filename=invocation.filename)  # in the log line of a photo refused from here on
    answer_format = invocation.format or _format_from_accept()
    limits = PhotoLimits(
        max_pixels=settings.max_image_pixels,
        jpeg_quality=settings.jpeg_quality,
        deadline=g.deadline,  # set where the photo entered the queue (app/http/admission.py)
        # The budget keeps a share for a client with no photo of its own at work (admission.py).
        hold_pixels=functools.partial(current_app.extensions["pixel_budget"].hold, client=g.get("client", "")),
    )
    result = process_photo(
        invocation.image,
        detector,
        invocation.options,
        limits,
        filename=invocation.filename,
        auto_crop=invocation.auto_crop,
        annotated=answer_format == "jpeg" or (answer_format == "json" and invocation.return_image),
    )
    if result.taken is None and invocation.date is not None:
        result = dataclasses.replace(result, taken=invocation.date)  # the file's time, as count takes it
    metrics.observe_stages(result.stage_seconds)
    metrics.count_objects(result.counts)
    add_fields(
        width=result.width,
        height=result.height,
        objects=len(result.detections),
        counts=render.found_counts(result),
        stage_ms={stage: round(seconds * 1000, 1) for stage, seconds in result.stage_seconds.items()},
        tiles=result.tiles.as_dict(),
    )
    return _rendered(result, answer_format, invocation.include_detections, detector, original)


def _format_from_accept() -> str:
    """JSON by default; the Accept header may ask for the picture itself, CSV or JSON lines."""
    if not request.accept_mimetypes:
        return "json"
    # `text/csv; charset=utf-8` is text/csv: werkzeug would hold the parameter against it.
    accepted = MIMEAccept([(media.split(";")[0].strip(), quality) for media, quality in request.accept_mimetypes])
    best = accepted.best_match(render.ACCEPTED_FORMATS)
    if best is None:
        raise NotAcceptable(
            f"this service answers {', '.join(render.ACCEPTED_FORMATS)} (format= asks for any of "
            f"{', '.join(render.MEDIA_TYPES)}), not {request.headers['Accept']}"
        )
    return render.ACCEPTED_FORMATS[best]


def _rendered(result, answer_format: str, detections: bool, detector: Detector, original: bool) -> Response:
    if answer_format == "jpeg":
        # The counts travel in a header, for clients that only want the picture.
        return Response(result.picture, content_type="image/jpeg", headers={"X-Stat": render.x_stat(result)})
    if answer_format in render.DOCUMENTS:
        document = render.DOCUMENTS[answer_format](detector.class_names, detections, detector.model_id)
        return Response(document.whole([result]), content_type=f"{document.media_type}; charset=utf-8")
    return jsonify(render.api_json(result, detections, tiles=not original))


@bp.get("/metrics")
def prometheus_metrics():
    payload, content_type = metrics.render()
    return Response(payload, content_type=content_type)
