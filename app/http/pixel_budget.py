"""A worker's memory budget for photos: decoded pixels in flight are bounded.

The pixel limit holds per photo, but a worker takes several photos at once, and a
100 MP photo costs 1.6-3.6 GB while it is decoded, tiled, annotated and encoded. Each
photo holds its pixel count from the budget for that whole time; the next waits its
turn (first come, first served, so a big photo is not starved by small ones) or, when
its deadline would pass first, is refused. A photo bigger than the whole budget runs
alone. After a photo of 4 MP or more the C heap gives its free pages back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager

from .turns import Turns

# After a photo this big, malloc_trim: glibc raises its mmap threshold up to 32 MB after
# the first big free and then keeps what later photos free on its heap (2 GB measured).
TRIM_AFTER_PIXELS = 4_000_000


class BudgetExhausted(RuntimeError):
    """The photo's deadline passed while it waited for memory held by other photos."""


class PixelBudget:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._turns = Turns()

    @contextmanager
    def hold(self, pixels: int, deadline: float) -> Iterator[None]:
        """Hold `pixels` from the budget (deadline: time.monotonic() value) while the
        body runs."""
        share = min(pixels, self.capacity)
        with self._turns.changed:
            self._turns.wait_turn(
                lambda: self.used + share <= self.capacity,
                deadline,
                lambda: BudgetExhausted(
                    f"this worker's memory for photos ({self.capacity / 1e6:g} MP) stayed in use "
                    "by other photos until this request's deadline; retry in a moment"
                ),
            )
            self.used += share
        try:
            yield
        finally:
            with self._turns.changed:
                self.used -= share
                self._turns.changed.notify_all()
            if pixels >= TRIM_AFTER_PIXELS:
                release_free_memory()


_libc = None


def release_free_memory() -> None:
    """glibc's malloc_trim: free heap pages go back to the system (no-op elsewhere)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name) if name else False
    trim = getattr(_libc, "malloc_trim", None) if _libc else None
    if trim is not None:
        trim(0)
