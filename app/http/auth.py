"""Who may call: with API keys configured, every route but /ping (health checks), the
page and its files, and CORS preflights needs a key, in one of the forms api_keys.py
defines (Bearer, Basic with the key as password, X-API-Key)."""

from __future__ import annotations

from flask import Flask, g, request

from app.api_keys import AUTHORIZATION, NO_KEY, OPEN_ENDPOINTS, X_API_KEY, matching_key, presented_keys

from .errors import Unauthorized


def init_app(app: Flask, api_keys: tuple[str, ...]) -> None:
    if not api_keys:
        return

    @app.before_request
    def _require_key():
        if request.method == "OPTIONS" or request.endpoint in OPEN_ENDPOINTS:
            return
        offered = request_keys()
        if not offered:
            raise Unauthorized(NO_KEY)
        g.api_key = matching_key(offered, api_keys)
        if g.api_key is None:
            raise Unauthorized("the API key is not valid")


def request_keys() -> list[bytes]:
    return presented_keys(request.headers.get(AUTHORIZATION), request.headers.get(X_API_KEY))
