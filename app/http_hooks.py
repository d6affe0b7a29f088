"""Per-request concerns every response shares: a request id, and CORS headers."""

from __future__ import annotations

import re
import uuid

from flask import Flask, g, request

SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def init_app(app: Flask, cors_origins: tuple[str, ...]) -> None:
    @app.before_request
    def _assign_request_id():
        # Keep a caller's id (a front end or a load balancer set it) when it is safe to log.
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex

    @app.after_request
    def _decorate(response):
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        origin = request.headers.get("Origin")
        if "*" in cors_origins:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin in cors_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.vary.add("Origin")
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization, X-API-Key, X-Request-ID"
            response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Access-Control-Expose-Headers"] = "X-Request-ID"
        return response
