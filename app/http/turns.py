"""First come, first served turns under one lock: what the photo queue and the photo
memory budget both need. A caller waits until it is first in line and its resource
fits, or until its deadline passes; whoever leaves the line wakes the others."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable


class Turns:
    def __init__(self):
        self.changed = threading.Condition()  # held by callers around wait_turn and their counts
        self._line: deque[int] = deque()
        self._tickets = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._line)

    def wait_turn(self, fits: Callable[[], bool], deadline: float, refusal: Callable[[], Exception]) -> None:
        """With `changed` held: returns when this caller is first in line and fits()
        holds; raises refusal() when the deadline (time.monotonic()) passes first."""
        ticket = next(self._tickets)
        self._line.append(ticket)
        try:
            while not (self._line[0] == ticket and fits()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise refusal()
                self.changed.wait(remaining)
        finally:
            self._line.remove(ticket)
            self.changed.notify_all()  # the next in line may fit now


class FairTurns:
    """Turns shared between clients: the next place goes to the waiting client with the
    fewest photos at work, then the least engine time used lately (each photo's time
    at work, halved every HALF_LIFE_S), then to whoever came first. A client that sends
    many or costly photos (its tiles are its time) waits behind one that sends few; alone,
    it is served first come, first served as before."""

    HALF_LIFE_S = 60.0

    def __init__(self):
        self.changed = threading.Condition()  # held by callers around wait_turn and their counts
        self._line: dict[int, str] = {}  # ticket -> client, in arrival order
        self._tickets = itertools.count()
        self._working: dict[str, int] = {}
        self._used: dict[str, tuple[float, float]] = {}  # client -> (seconds, when counted)

    @property
    def waiting(self) -> int:
        return len(self._line)

    def wait_turn(
        self, client: str, fits: Callable[[], bool], deadline: float, refusal: Callable[[], Exception]
    ) -> None:
        """With `changed` held: returns when this caller is next by share and fits()
        holds; raises refusal() when the deadline (time.monotonic()) passes first."""
        ticket = next(self._tickets)
        self._line[ticket] = client
        try:
            while not (self._next() == ticket and fits()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise refusal()
                self.changed.wait(remaining)
        finally:
            del self._line[ticket]
            self.changed.notify_all()  # the next by share may fit now

    def started(self, client: str) -> None:
        self._working[client] = self._working.get(client, 0) + 1

    def finished(self, client: str, seconds: float) -> None:
        left = self._working.get(client, 1) - 1
        if left:
            self._working[client] = left
        else:
            self._working.pop(client, None)
        now = time.monotonic()
        self._used[client] = (self.used(client, now) + seconds, now)
        if len(self._used) > 4096:  # forget the clients that used least, and longest ago
            for forgotten in sorted(self._used, key=lambda name: self.used(name, now))[:2048]:
                del self._used[forgotten]

    def working(self, client: str) -> int:
        return self._working.get(client, 0)

    def ahead_of(self, client: str) -> int:
        """How many waiting callers go before a new one of this client."""
        now = time.monotonic()
        mine = (self.working(client), self.used(client, now), math.inf)
        return sum(1 for ticket in self._line if self._rank(ticket, now) < mine)

    def used(self, client: str, now: float) -> float:
        seconds, when = self._used.get(client, (0.0, now))
        return seconds * 0.5 ** ((now - when) / self.HALF_LIFE_S)

    def _next(self) -> int:
        now = time.monotonic()
        return min(self._line, key=lambda ticket: self._rank(ticket, now))

    def _rank(self, ticket: int, now: float) -> tuple[int, float, float]:
        client = self._line[ticket]
        return self._working.get(client, 0), self.used(client, now), ticket
