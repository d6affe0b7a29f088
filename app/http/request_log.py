"""One structured log line per request, and the request metrics, in one place.

Routes add what they learnt (image size, timings, counts) to `g.log_fields`; the
line is written after the response is built, so it carries the final status.
Every text in it is bounded: a client's 30 MB `filename` is not a 30 MB log line."""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request

from app.log_lines import Fields

from . import metrics
from .client_address import client_address

log = logging.getLogger("app.request")
MAX_FIELD_CHARS = 200  # per text in the request line: a file name, a path, a method
NOT_LOGGED = frozenset({"/ping", "/ping/", "/metrics"})  # health checks would drown the log
# The page's own files: a dozen lines per visit at INFO would bury the photos; DEBUG shows them.
PAGE_FILES = frozenset({"static", "service.favicon"})


def add_fields(**fields) -> None:
    g.setdefault("log_fields", {}).update(fields)


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_clock():
        g.started = time.perf_counter()
        # Count the body as it is read: a chunked upload has no Content-Length to log.
        g.body = request.environ["wsgi.input"] = CountingInput(request.environ["wsgi.input"])

    @app.after_request
    def _log_and_count(response):
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else None
        metrics.count_request(request.method, route, response.status_code, seconds)
        if route not in NOT_LOGGED:
            line = {
                "request_id": g.get("request_id"),
                "client": client_address(),  # the real one behind a trusted proxy
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "bytes_in": _bytes_in(),
                "bytes_out": response.calculate_content_length(),
                "ms": round(seconds * 1000, 1),
                **g.get("log_fields", {}),
            }
            quiet = request.endpoint in PAGE_FILES and response.status_code < 400
            log.log(logging.DEBUG if quiet else logging.INFO, Fields(bounded(line)))
        return response


def _bytes_in() -> int:
    if request.content_length is not None:
        return request.content_length  # what the client declared, read or drained
    body = g.get("body")
    return body.bytes_read if body is not None else 0


def bounded(value, limit: int = MAX_FIELD_CHARS):
    """The value with every text (dict keys too) cut to `limit` characters plus a marker."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}…[+{len(value) - limit} chars]"
    if isinstance(value, dict):
        return {bounded(str(key), limit): bounded(item, limit) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [bounded(item, limit) for item in value]
    return value


class CountingInput:
    """wsgi.input that counts the bytes read from it."""

    def __init__(self, stream):
        self._stream = stream
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = self._stream.read() if size is None or size < 0 else self._stream.read(size)
        self.bytes_read += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = self._stream.readline() if size is None or size < 0 else self._stream.readline(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = self._stream.readlines() if hint is None or hint < 0 else self._stream.readlines(hint)
        self.bytes_read += sum(map(len, lines))
        return lines

    def __iter__(self):
        while line := self.readline():
            yield line

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
