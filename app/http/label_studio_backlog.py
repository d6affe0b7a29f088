"""The tasks a Label Studio /predict had no time for, counted after it answered and
served from memory on the next one.

Label Studio sends every selected task in one request and waits ML_TIMEOUT_PREDICT
(100 s) for all of them; a batch of big tiled photos does not fit. The answer carries
the predictions done in time (Label Studio takes them task by task) and the rest are
counted here, one at a time, in a background thread of the worker: "Retrieve
Predictions" again finds them ready. Predictions are kept by what makes them (the
model, the photo's URL, the labelling config, the threshold), least recently used
dropped first, so a batch retrieved twice labels every task.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

KEPT_PREDICTIONS = 2000  # a few KB each: some MB per worker at most
WAITING_TASKS = 1000  # beyond this a task is left for the next /predict to count itself


def prediction_key(model_id: str, url: str, config_xml: str, threshold: float) -> str:
    """What a prediction depends on, as one digest."""
    made_of = "\0".join((model_id, url, hashlib.sha256(config_xml.encode("utf-8", "surrogatepass")).hexdigest()))
    return hashlib.sha256(f"{made_of}\0{threshold!r}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Later:
    """A task to count after the answer: its key, and how to count it (a call that
    returns its prediction, or raises for a task that cannot be pre-labelled)."""

    key: str
    task_id: object
    count: Callable[[], dict]


class Backlog:
    def __init__(self, kept: int = KEPT_PREDICTIONS, waiting: int = WAITING_TASKS):
        self._done: OrderedDict[str, dict] = OrderedDict()
        self._kept = kept
        self._queue: queue.Queue[Later] = queue.Queue(maxsize=waiting)
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def ready(self, key: str) -> dict | None:
        with self._lock:
            found = self._done.get(key)
            if found is not None:
                self._done.move_to_end(key)
            return found

    def keep(self, key: str, prediction: dict) -> None:
        with self._lock:
            self._done[key] = prediction
            self._done.move_to_end(key)
            while len(self._done) > self._kept:
                self._done.popitem(last=False)

    def later(self, tasks: list[Later]) -> int:
        """Queue what is neither ready nor queued already; returns how many were queued."""
        queued = 0
        for task in tasks:
            with self._lock:
                if task.key in self._pending or task.key in self._done:
                    continue
                try:
                    self._queue.put_nowait(task)
                except queue.Full:
                    break
                self._pending.add(task.key)
                queued += 1
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._work, name="label-studio-backlog", daemon=True)
                    self._thread.start()
        return queued

    def waiting(self) -> int:
        with self._lock:
            return len(self._pending)

    def _work(self) -> None:
        while True:
            try:
                task = self._queue.get(timeout=60)
            except queue.Empty:
                with self._lock:  # idle a minute: the thread ends, the next batch starts one
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            started = time.monotonic()
            try:
                self.keep(task.key, task.count())
                seconds = time.monotonic() - started
                log.info("label studio task %s counted after its batch in %.1f s", task.task_id, seconds)
            except Exception as exc:  # a task that cannot be pre-labelled: the next /predict says why
                log.warning("label studio task %s: not counted after its batch: %s", task.task_id, exc)
            finally:
                with self._lock:
                    self._pending.discard(task.key)
