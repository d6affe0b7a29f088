"""A worker's memory budget for photos: decoded pixels in flight are bounded.

The pixel limit holds per photo, but a worker takes several photos at once, and a
100 MP photo costs 1.6-3.6 GB while it is decoded, tiled, annotated and encoded. Each
photo holds its pixel count from the budget for that whole time; the next waits its
turn (first come, first served, so a big photo is not starved by small ones) or, when
its deadline would pass first, is refused. A photo bigger than the whole budget runs
alone. Turns go by client share as the photo queue's; a client that holds nothing may
use a reserve of an eighth beyond the budget for a photo that fits it, so one client's
100 MP photo does not keep the camera photos of others waiting for a minute. After a
photo of 4 MP or more the C heap gives its free pages back to the system.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .turns import FairTurns

# After a photo this big, malloc_trim: glibc raises its mmap threshold up to 32 MB after
# the first big free and then keeps what later photos free on its heap (2 GB measured).
TRIM_AFTER_PIXELS = 4_000_000
# Beyond the budget, for a photo of a client that holds none while others' photos hold
# it all (a 100 MP photo holds the whole of it for a minute): a few camera photos' worth.
RESERVE_SHARE = 8


class BudgetExhausted(RuntimeError):
    """The photo's deadline passed while it waited for memory held by other photos."""


class PixelBudget:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self.reserve = capacity // RESERVE_SHARE
        self._turns = FairTurns()

    @contextmanager
    def hold(self, pixels: int, deadline: float, client: str = "") -> Iterator[None]:
        """Hold `pixels` from the budget (deadline: time.monotonic() value) while the
        body runs; turns by client share (turns.FairTurns), as the photo queue's."""
        share = min(pixels, self.capacity)
        with self._turns.changed:
            if not self._in_reserve(share, client):  # the reserve is taken at once, past any line
                self._turns.wait_turn(
                    client,
                    lambda: self._fits(share, client),
                    deadline,
                    lambda: BudgetExhausted(
                        f"this worker's memory for photos ({self.capacity / 1e6:g} MP) stayed in use "
                        "by other photos until this request's deadline; retry in a moment"
                    ),
                )
            self.used += share
            self._turns.started(client)
        started = time.monotonic()
        try:
            yield
        finally:
            with self._turns.changed:
                self.used -= share
                self._turns.finished(client, time.monotonic() - started)
                self._turns.changed.notify_all()
            if pixels >= TRIM_AFTER_PIXELS:
                release_free_memory()

    def _fits(self, share: int, client: str) -> bool:
        return self.used + share <= self.capacity or self._in_reserve(share, client)

    def _in_reserve(self, share: int, client: str) -> bool:
        """Beyond a full budget, for a small photo of a client that holds none."""
        alone = self._turns.working(client) == 0 and share <= self.reserve
        return alone and self.capacity < self.used + share <= self.capacity + self.reserve


_libc = None


def release_free_memory() -> None:
    """glibc's malloc_trim: free heap pages go back to the system (no-op elsewhere)."""
    global _libc
    if _libc is None:
        try:  # the process's own symbols: glibc's where it runs on glibc (find_library would run ldconfig)
            _libc = ctypes.CDLL(None)
        except OSError:
            _libc = False
    trim = getattr(_libc, "malloc_trim", None) if _libc else None
    if trim is not None:
        trim(0)
