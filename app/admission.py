"""Backpressure: a worker admits at most THREADS - 1 photos at once and answers the
rest 503 busy at once, so one request thread is always free for /ping (health
checks must answer in well under a second, SageMaker's within 2 s)."""

from __future__ import annotations

import threading

from flask import Flask, g, request

from .errors import Busy

GUARDED_ENDPOINTS = frozenset({"service.invocations"})
# A refused photo up to this size is read before the 503: gunicorn closes a connection
# whose body was left unread, and a client that reconnects after every 503 stalls the
# worker's event loop (8 clients on 7 slots fell from 36 to 8 requests/s). Bigger
# bodies are not worth reading only to refuse them.
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024


def init_app(app: Flask, threads: int) -> None:
    slots = threading.BoundedSemaphore(max(1, threads - 1))

    @app.before_request
    def _admit():
        if request.endpoint in GUARDED_ENDPOINTS:
            if not slots.acquire(blocking=False):
                if request.content_length is not None and request.content_length <= DRAIN_LIMIT_BYTES:
                    request.get_data(cache=False)
                raise Busy("every slot of this worker is processing a photo; retry in a moment")
            g.admitted = True

    @app.teardown_request
    def _release(_error):
        if g.pop("admitted", False):
            slots.release()
