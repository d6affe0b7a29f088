"""First come, first served turns under one lock: what the photo queue and the photo
memory budget both need. A caller waits until it is first in line and its resource
fits, or until its deadline passes; whoever leaves the line wakes the others."""

from __future__ import annotations

import itertools
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
