"""Who may call: with API keys configured, every route but /ping (health checks) and
CORS preflights needs `Authorization: Bearer <key>` or `X-API-Key: <key>` (or basic
auth with the key as password, what Label Studio's ML backend form can send)."""

from __future__ import annotations

import hmac

from flask import Flask, request

from .errors import Unauthorized

OPEN_ENDPOINTS = frozenset({"service.ping", "service.openapi", "service.index", "service.favicon", "static"})


def init_app(app: Flask, api_keys: tuple[str, ...]) -> None:
    if not api_keys:
        return
    known = [key.encode() for key in api_keys]

    @app.before_request
    def _require_key():
        if request.method == "OPTIONS" or request.endpoint in OPEN_ENDPOINTS:
            return
        presented = _presented_key()
        if presented is None:
            raise Unauthorized("this service needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
        if not _matches(presented.encode(), known):
            raise Unauthorized("the API key is not valid")


def _presented_key() -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if scheme.lower() == "basic" and request.authorization and request.authorization.password:
        # Label Studio's ML backend form offers basic auth only: the key is the password.
        return request.authorization.password
    return request.headers.get("X-API-Key") or None


def _matches(presented: bytes, known: list[bytes]) -> bool:
    # Compare with every key, in constant time each: the timing tells nothing.
    matched = False
    for key in known:
        matched |= hmac.compare_digest(presented, key)
    return matched
