"""nginx's own answers (its refusals, its 503s) in the service's JSON shape
{"error": {"code", "message"}}, with the status each case calls for: error_page to an
internal location per status. front.py puts them in nginx's config."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from app import api_keys

if TYPE_CHECKING:
    from .front import FrontSettings, Limits

URL_LIMIT_KB = 8  # nginx's large_client_header_buffers: a request line past it is a 414
ERROR_PREFIX = "/.front-error/"


def _json_error(
    status: int, code: str, message: str, settings: FrontSettings, *extra: str, request_id: bool = False
) -> str:
    error = {"code": code, "message": message, **({"request_id": "$request_id_out"} if request_id else {})}
    body = json.dumps({"error": error}).replace("'", "\\'")
    cors = "add_header Access-Control-Allow-Origin * always;" if settings.cors_any_origin else ""
    lines = [
        "default_type application/json;",
        "add_header X-Request-ID $request_id_out always;",
        cors,
        *extra,
        f"return {status} '{body}';",
    ]
    return " ".join(line for line in lines if line)


def error_locations(settings: FrontSettings, limits: Limits) -> str:
    retry = "add_header Retry-After 5 always;"
    pages = {
        "400": ("bad_request", _bad_request(settings)),
        "401": ("unauthorized", _json_error(
            401, "unauthorized", api_keys.NO_KEY, settings,
            "add_header WWW-Authenticate 'Bearer realm=\"detector\"' always;",
        )),
        # TRACE (nginx refuses it itself) and methods no route takes: the methods the API
        # uses; a GET with a body of a POST-only route: that route's (front.py sets it).
        "405": ("method_not_allowed", _json_error(
            405, "method_not_allowed", "the method is not allowed here", settings,
            "add_header Allow $allow_header always;",
        )),
        "413": ("payload_too_large", _json_error(413, "payload_too_large", "$too_large_message", settings)),
        "414": ("uri_too_long", _json_error(
            414, "uri_too_long", f"the URL is longer than {URL_LIMIT_KB} KB; send parameters in the body", settings
        )),
        "429": ("too_many_requests", _json_error(
            429, "too_many_requests",
            f"this client has too many requests open (at most {limits.per_client}, of which "
            f"{limits.uploads_per_client} uploads), or the service too many uploads; retry when yours are answered",
            settings, "add_header Retry-After 1 always;",
        )),
        # A head line past a buffer (large_client_header_buffers), or all of them full.
        "494": ("header_too_large", _json_error(
            431, "header_too_large",
            f"a header line is longer than {URL_LIMIT_KB} KB, or the head as a whole too large", settings,
        )),
        # As the app's own 500: the request id is in the log (the front's line for it) too.
        "500": ("internal_error", _json_error(
            500, "internal_error",
            "the front could not take the request (is its temporary space full?); retry later, "
            "and give the request id if it persists",
            settings, retry, request_id=True,
        )),
        "501": ("not_implemented", _json_error(
            501, "not_implemented", "a Transfer-Encoding other than chunked is not supported", settings
        )),
        "502": ("unavailable", _json_error(
            503, "unavailable", "the service is starting or stopping; retry in a moment", settings, retry
        )),
        "504": ("timeout", _json_error(
            503, "timeout", f"the service did not answer within {settings.upstream_timeout_s:g} s; retry later",
            settings, retry,
        )),
        "505": ("http_version_not_supported", _json_error(
            505, "http_version_not_supported", "this port speaks HTTP/1.1; send the request over HTTP/1.1", settings
        )),
    }  # fmt: skip
    lines = []
    for codes, (name, body) in pages.items():
        lines.append(f"        error_page {codes} = {ERROR_PREFIX}{name};")
        lines.append(f"        location = {ERROR_PREFIX}{name} {{ internal; {body} }}")
    return "\n".join(lines)


def _bad_request(settings: FrontSettings) -> str:
    """400, or what the request line says it was: HTTP/2 spoken to an HTTP/1 port (its
    preface is `PRI * HTTP/2.0`), a proxy's CONNECT."""
    allow = "add_header Allow 'GET, HEAD, POST, OPTIONS' always;"
    http2 = _json_error(
        400, "http2_not_supported", "this port speaks HTTP/1.1; send the request over HTTP/1.1", settings
    )
    connect = _json_error(405, "method_not_allowed", "CONNECT is not served: this is not a proxy", settings, allow)
    malformed = _json_error(
        400, "bad_request", "the request is malformed (its line, target or head), or its head too large", settings
    )
    # The request line as sent ($request_method is unset when it could not be parsed). In
    # an `if` block only add_header and return (what nginx calls safe there), and the
    # block's own add_header replaces the location's: each block says them all.
    return (
        f'if ($request ~ "^PRI \\* HTTP/2") {{ {_in_if(http2)} }} '
        f'if ($request ~ "^CONNECT ") {{ {_in_if(connect)} }} '
        f"{malformed}"
    )


def _in_if(rendered: str) -> str:
    """A _json_error without its default_type, which an `if` block may not hold (the
    location's holds for it)."""
    return rendered.replace("default_type application/json; ", "")
