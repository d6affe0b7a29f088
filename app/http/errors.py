"""The one place that knows HTTP status codes: API errors, the domain errors they
stand for, and the JSON body every error gets: {"error": {"code", "message"}}."""

from __future__ import annotations

import logging
import re

from flask import Flask, g, jsonify
from werkzeug.exceptions import HTTPException

from app.inference.detector import DeadlineExceeded, EngineBusy
from app.vision.images import DamagedImage, DecompressionBomb, ImageTooLarge, InvalidImage

from .pixel_budget import BudgetExhausted
from .request_log import add_fields

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 500
    code = "internal_error"
    headers: dict[str, str] = {}  # noqa: RUF012 - read-only per class

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="detector"'}  # noqa: RUF012


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class NotAcceptable(ApiError):
    status, code = 406, "not_acceptable"


class Busy(ApiError):
    status, code = 503, "busy"
    headers = {"Retry-After": "1"}  # noqa: RUF012


class NotReady(ApiError):
    status, code = 503, "not_ready"


# Domain errors raised below the HTTP layer, and what a client is told about them.
# Subclasses come before their base: the first match answers.
DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    DamagedImage: (400, "damaged_image"),
    DecompressionBomb: (400, "decompression_bomb"),
    InvalidImage: (400, "invalid_image"),
    ImageTooLarge: (413, "image_too_large"),
    EngineBusy: (503, "busy"),
    BudgetExhausted: (503, "busy"),
    DeadlineExceeded: (503, "deadline_exceeded"),
}
# An error names what was wrong, never echoes it whole: a 45 MB `classes` list once
# came back as a 117 MB error body. Every message is cut to this, whatever made it.
MAX_MESSAGE_CHARS = 1000

# The domain errors that a retry can cure, and when (a busy worker's as Busy's own).
RETRY_AFTER = {Busy.code: Busy.headers["Retry-After"], "deadline_exceeded": "5"}


def error_response(status: int, code: str, message: str, **extra):
    add_fields(error=code)  # the request's log line says what went wrong, not only the status
    response = jsonify({"error": {"code": code, "message": bounded(message), **extra}})
    response.status_code = status
    return response


def bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text`, or its start and how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        response = error_response(error.status, error.code, error.message)
        response.headers.update(error.headers)
        return response

    def _domain_error(error: Exception):
        status, code = next(answer for kind, answer in DOMAIN_ERRORS.items() if isinstance(error, kind))
        response = error_response(status, code, str(error))
        if code in RETRY_AFTER:
            response.headers["Retry-After"] = RETRY_AFTER[code]
        return response

    for exception in DOMAIN_ERRORS:
        app.register_error_handler(exception, _domain_error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        # Werkzeug's own errors (404, 405, 413 from MAX_CONTENT_LENGTH...), in our shape.
        code = re.sub(r"[^a-z0-9]+", "_", (error.name or "error").lower()).strip("_")
        if error.code == 413:
            code = "payload_too_large"
        response = error_response(error.code or 500, code, error.description or error.name)
        for name, value in error.get_headers():  # e.g. Allow on a 405, as RFC 9110 asks
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _server_fault(error: Exception):
        request_id = g.get("request_id", "-")
        log.exception("request %s failed", request_id)
        return error_response(
            500,
            "internal_error",
            "the server failed on this request; quote the request id when reporting it",
            request_id=request_id,
        )
