"""Cross-origin calls from a browser (a lab's own page on another host), through
flask-cors: CORS_ORIGINS (default `*`) may call; answers expose X-Stat and
X-Request-ID; no credentials and no private-network access are ever granted."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

ALLOWED_HEADERS = ("Content-Type", "Authorization", "X-API-Key", "X-Request-ID")  # what the API reads
EXPOSED_HEADERS = ("X-Stat", "X-Request-ID")
PREFLIGHT_MAX_AGE_S = 600


def init_app(app: Flask, origins: tuple[str, ...]) -> None:
    """origins: `*`, or exact origins (app/settings.py refuses anything that could read
    as a pattern, so flask-cors compares them as text, case-insensitively)."""
    anyone = "*" in origins
    CORS(
        app,
        resources={r"/*": {}},  # every path alike: no rule for a `+` or a capital to slip past
        origins="*" if anyone else list(origins),
        send_wildcard=anyone,  # `*` itself, not the caller's origin echoed back
        always_send=anyone,
        methods=["GET", "POST", "OPTIONS"],
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        max_age=PREFLIGHT_MAX_AGE_S,
        supports_credentials=False,
        allow_private_network=False,
    )
    if not anyone:

        @app.after_request
        def _vary_on_origin(response):
            # Refused or allowed, the answer depends on the caller's origin; flask-cors says
            # so only when it allows one of several. A cache must know either way.
            response.vary.add("Origin")
            return response
