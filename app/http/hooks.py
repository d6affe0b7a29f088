"""Per-request concerns at the edge: a request id, and the body limit for uploads
that come without a Content-Length."""

from __future__ import annotations

import io
import re
import uuid

from flask import Flask, g, request
from werkzeug.exceptions import RequestEntityTooLarge

SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def init_app(app: Flask) -> None:
    @app.before_request
    def _assign_request_id():
        # Keep a caller's id (a front end or a load balancer set it) when it is safe to log.
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex

    @app.after_request
    def _echo_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        return response


def limit_streamed_bodies(app: Flask, max_bytes: int) -> None:
    """A chunked upload has no Content-Length for Werkzeug to refuse up front, and
    Werkzeug would silently cut it at the limit (a truncated photo, a misleading 400).
    Read it here, at most one byte past the limit, and refuse it as too large."""

    @app.before_request
    def _bounded_body():
        if request.content_length is not None or request.method not in ("POST", "PUT"):
            return
        body = request.environ["wsgi.input"].read(max_bytes + 1)
        if len(body) > max_bytes:
            raise RequestEntityTooLarge()
        request.environ["wsgi.input"] = io.BytesIO(body)
        request.environ["CONTENT_LENGTH"] = str(len(body))
