"""The engine's lock, handed over in arrival order.

Engines are not thread-safe (darknet, OpenCV's Net): one forward pass at a time. A
tiled photo takes the engine for each run of tiles and gives it back in between; the
next turn goes to the caller that has had the fewest turns for its photo (a photo
just arrived has had none), then to the first come. A photo that arrives while big
ones are tiled waits one run of tiles (TILES_PER_CHECK), not a whole big photo: with
threading.Lock the thread that just let go usually took it again, and a 100 MP photo
held the engine for a minute while a 0.4 MP one waited.
"""

from __future__ import annotations

import itertools
import threading
import time


class EngineTurns:
    def __init__(self):
        self._changed = threading.Condition()
        self._held = False
        self._line: list[tuple[int, int]] = []  # (turns had, ticket) of each waiting caller
        self._tickets = itertools.count()

    def acquire(self, blocking: bool = True, timeout: float = -1, turns_had: int = 0) -> bool:
        """As threading.Lock.acquire; turns_had: how many turns the caller's photo had."""
        with self._changed:
            ticket = (turns_had, next(self._tickets))
            self._line.append(ticket)
            until = None if timeout < 0 else time.monotonic() + timeout
            try:
                while self._held or min(self._line) != ticket:
                    remaining = None if until is None else until - time.monotonic()
                    if not blocking or (remaining is not None and remaining <= 0):
                        return False
                    self._changed.wait(remaining)
                self._held = True
                return True
            finally:
                self._line.remove(ticket)
                self._changed.notify_all()

    def release(self) -> None:
        with self._changed:
            self._held = False
            self._changed.notify_all()

    def __enter__(self) -> EngineTurns:
        self.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self.release()
