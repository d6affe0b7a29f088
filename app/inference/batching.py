"""Dynamic batching, as Triton's dynamic batcher: whole photos of several requests go
through the engine in one forward pass, up to MAX_BATCH of them, waiting at most
MAX_BATCH_DELAY_MS for more once the first has arrived. The engine sees one call at a
time (this thread holds the detector's lock for it); each request keeps the boxes
above its own threshold.

A GPU runs a batch of 8 in little more than the time of one; a CPU's cores are busy
with one photo already, so there it gains nothing measurable (docs/performance.md,
`python -m bench.run`). So MAX_BATCH=1, the default, leaves this out entirely.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from app.vision.detection import Candidates

from .engines import Engine


class BatchTimeout(RuntimeError):
    """The photo's turn at the engine did not come before its deadline."""


class BatchFailed(RuntimeError):
    """The engine failed on a batch this photo was in (the cause is chained)."""


@dataclass
class _Pending:
    image: np.ndarray
    min_score: float
    done: threading.Event = field(default_factory=threading.Event)
    result: Candidates | None = None
    error: BaseException | None = None
    abandoned: bool = False  # its request gave up waiting: not worth a forward pass


class Batcher:
    def __init__(self, engine: Engine, lock, max_batch: int, max_delay_s: float):
        self._engine = engine
        self._lock = lock
        self.max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._pending: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self.batch_sizes: list[int] = []  # recent batch sizes, for tests and the benchmark

    def predict(self, image: np.ndarray, min_score: float, timeout: float | None) -> Candidates:
        """timeout: what is left of the photo's deadline; None waits as long as it takes."""
        self._start()
        item = _Pending(image, min_score)
        self._pending.put(item)
        if not item.done.wait(timeout):
            item.abandoned = True
            raise BatchTimeout(f"the model was busy until the request's deadline ({timeout:.1f} s); try again")
        if item.error is not None:  # one exception, several threads: each raises its own
            raise BatchFailed(f"the engine failed on a batch of photos: {item.error}") from item.error
        return item.result

    def _start(self) -> None:
        # Started on first use, in the worker: a thread started before gunicorn's fork
        # would not exist in the worker.
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="batcher", daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            batch = self._gather()
            if batch:
                self._run(batch)

    def _gather(self) -> list[_Pending]:
        batch = [self._pending.get()]
        until = time.monotonic() + self._max_delay_s
        while len(batch) < self.max_batch:
            try:  # what is already waiting joins at once; then at most the delay
                batch.append(self._pending.get(timeout=max(0.0, until - time.monotonic())))
            except queue.Empty:
                break
        return [item for item in batch if not item.abandoned]

    def _run(self, batch: list[_Pending]) -> None:
        floor = min(item.min_score for item in batch)
        try:
            with self._lock:
                found = self._engine.predict_many([item.image for item in batch], min_score=floor)
            for item, candidates in zip(batch, found, strict=True):
                item.result = _above(candidates, item.min_score) if item.min_score > floor else candidates
        except Exception as exc:  # the requests answer with it, the batcher goes on
            for item in batch:
                item.error = exc
        self.batch_sizes = [*self.batch_sizes[-999:], len(batch)]
        for item in batch:
            item.done.set()


def _above(candidates: Candidates, min_score: float) -> Candidates:
    keep = candidates.scores.max(axis=1, initial=0.0) > min_score
    passes = candidates.passes[keep] if candidates.passes is not None else None
    return Candidates(boxes=candidates.boxes[keep], scores=candidates.scores[keep], passes=passes)
