"""The queue in front of the engine: a worker works on `active` photos at once and
keeps up to `depth` more waiting, as Triton and TorchServe queue per model; the next
place goes by each client's share (turns.FairTurns: fewest photos at work, then least
engine time used lately), first come first served among equals. A client is its API
key where keys are on, else its address (as nginx saw it). A photo is refused (503
busy, Retry-After) only when the queue is full, when its deadline would pass before its
turn, or while the worker is stopping; /ping, /metrics and /model never wait behind it
(the worker has threads to spare for them).

A queued photo waits before its body is read: what waits is a connection, not a photo
in memory (nginx holds the body meanwhile).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from flask import Flask, g, request

from .client_address import client_address
from .errors import Busy
from .turns import FairTurns

# A Label Studio predict is one place in the queue for all its tasks, counted one by one.
GUARDED_ENDPOINTS = frozenset({"service.invocations", "service.upload", "label_studio.predict"})
# Without nginx in front (tests, FRONT=none) a refused body up to this size is read
# before the 503: gunicorn closes a connection whose body was left unread, and a
# client that reconnects after every 503 stalled the worker's loop.
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
SMOOTHING = 0.2  # weight of the newest photo in the average time a photo takes


class QueueRefusal(Exception):
    """The queue cannot take this photo now; the message says why."""


class PhotoQueue:
    def __init__(self, active: int, depth: int, observe: Callable[[int, int], None] = lambda queued, working: None):
        """observe(queued, working): told every change, under the queue's lock (/metrics)."""
        self.active = active
        self.depth = depth
        self._observe = observe
        self._working = 0
        self._turns = FairTurns()
        self._seconds_per_photo = 0.0  # what a photo holds a place for, smoothed
        self.stopping = False  # set on SIGTERM: new photos are refused, the queue drains

    def enter(self, deadline: float, client: str = "") -> float:
        """Wait for a place; returns when the photo may start (its start time)."""
        with self._turns.changed:
            if self.stopping:
                raise QueueRefusal("this worker is stopping; retry in a moment")
            ahead = self._turns.ahead_of(client)
            if not self._fits(client) or ahead:
                if self._turns.waiting >= self.depth:
                    raise QueueRefusal(f"{self.depth} photos already wait in this worker's queue; retry in a moment")
                expected = self._expected_wait(ahead)
                if time.monotonic() + expected > deadline:
                    raise QueueRefusal(
                        f"{ahead} photos wait ahead of this one (about {expected:.0f} s), "
                        "longer than its deadline; retry in a moment"
                    )
                self._observe(self._turns.waiting + 1, self._working)  # this one waits too
                try:
                    self._turns.wait_turn(
                        client,
                        lambda: self._fits(client),
                        deadline,
                        lambda: QueueRefusal("the photo's deadline passed while it waited its turn; retry"),
                    )
                finally:
                    self._observe(self._turns.waiting, self._working)
            self._working += 1
            self._turns.started(client)
            self._observe(self._turns.waiting, self._working)
            return time.monotonic()

    def leave(self, started: float, client: str = "", photos: int = 1) -> None:
        """photos: how many photos the place held (a Label Studio predict holds its tasks):
        the time a photo takes is learnt per photo, not per request."""
        took = (time.monotonic() - started) / max(1, photos)
        with self._turns.changed:
            self._working -= 1
            self._turns.finished(client, took)
            self._observe(self._turns.waiting, self._working)
            self._seconds_per_photo += SMOOTHING * (took - self._seconds_per_photo)
            self._turns.changed.notify_all()

    def _fits(self, client: str) -> bool:
        """A place is free; or, for a client with no photo at work while others hold
        every place (two costly photos of other clients), one of the `active` extra
        places: its photo takes the engine between their runs of tiles."""
        if self._working < self.active:
            return True
        return self._turns.working(client) == 0 and self._working < 2 * self.active

    def _expected_wait(self, ahead: int) -> float:
        """Until a photo behind `ahead` others starts: rounds of `active` photos."""
        return math.ceil((ahead + 1) / self.active) * self._seconds_per_photo


def init_app(app: Flask, queue: PhotoQueue, deadline_s: float, keyed: bool = False) -> None:
    app.extensions["photo_queue"] = queue

    @app.before_request
    def _admit():
        if request.method == "OPTIONS" or request.endpoint not in GUARDED_ENDPOINTS:
            return  # a CORS preflight carries no photo
        g.deadline = time.monotonic() + deadline_s
        g.client = client_of(keyed)
        try:
            g.queue_started = queue.enter(g.deadline, g.client)
        except QueueRefusal as refusal:
            if request.content_length is not None and request.content_length <= DRAIN_LIMIT_BYTES:
                request.get_data(cache=False)
            request.environ["detector.refused"] = True  # gunicorn.conf.py: not counted as served
            raise Busy(str(refusal)) from None

    @app.teardown_request
    def _release(_error):
        started = g.pop("queue_started", None)  # request_log keeps its own g.started
        if started is not None:
            queue.leave(started, g.get("client", ""), g.pop("queue_photos", 1))


def client_of(keyed: bool) -> str:
    """Who sends this photo: its API key where keys are on (auth.py found which, with
    api_keys.py's one reading of the headers), else its address (client_address.py)."""
    key = g.get("api_key") if keyed else None
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return "address:" + client_address()
