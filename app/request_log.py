"""One structured log line per request, and the request metrics, in one place.

Routes add what they learnt (image size, timings, counts) to `g.log_fields`; the
line is written after the response is built, so it carries the final status."""

from __future__ import annotations

import json
import logging
import time

from flask import Flask, g, request

from . import metrics

log = logging.getLogger("app.request")


def add_fields(**fields) -> None:
    g.setdefault("log_fields", {}).update(fields)


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_clock():
        g.started = time.perf_counter()

    @app.after_request
    def _log_and_count(response):
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        metrics.REQUEST_SECONDS.labels(endpoint).observe(seconds)
        if endpoint not in ("/ping", "/ping/", "/metrics"):  # health checks would drown the log
            line = {
                "request_id": g.get("request_id"),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "bytes_in": request.content_length or 0,
                "bytes_out": response.calculate_content_length(),
                "ms": round(seconds * 1000, 1),
                **g.get("log_fields", {}),
            }
            log.info(json.dumps(line, separators=(",", ":")))
        return response
