"""Clients of a running server: one at a time for latency, several at once for
throughput. Each client keeps its connection open (requests.Session), as a lab's
script or a browser does."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from .server import session_from
from .timing import Timing, time_calls

REQUEST_TIMEOUT_S = 600  # a big photo, tiled, on a busy CPU takes seconds; waiting is not failing
MAX_WINDOW_S = 600  # a client that has not finished one request by then gives up
CONNECTION_RETRY_S = 1.0


@dataclass(frozen=True)
class LoadResult:
    clients: int
    completed: int
    errors: int
    seconds: float
    latencies_ms: tuple[float, ...] = ()  # of the completed requests

    @property
    def rate(self) -> float:
        return self.completed / self.seconds

    def percentile(self, share: float) -> float:
        """Nearest rank, as p90 in timing.py."""
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else float("nan")


@dataclass
class _Window:
    """The shared measurement window: it opens when every client is warm."""

    duration: float
    started: float = 0.0

    def open(self) -> None:
        self.started = time.perf_counter()

    def still_open(self, completed: int) -> bool:
        # Past the duration a client goes on until it has one answer: with requests that
        # take longer than the window, a rate from zero completions would say nothing.
        elapsed = time.perf_counter() - self.started
        return elapsed < self.duration or (completed == 0 and elapsed < MAX_WINDOW_S)


def post_photo(session: requests.Session, url: str, photo: bytes) -> requests.Response:
    return session.post(
        f"{url}/invocations", data=photo, headers={"Content-Type": "image/jpeg"}, timeout=REQUEST_TIMEOUT_S
    )


def warm_up(url: str, photo: bytes) -> None:
    """A server's first request pays for lazy imports and first allocations."""
    with requests.Session() as session:
        post_photo(session, url, photo).raise_for_status()


def sequential_latency(url: str, photo: bytes, timing: Timing) -> list[float]:
    """Milliseconds per request, one client, one request at a time."""
    with requests.Session() as session:

        def call() -> None:
            response = post_photo(session, url, photo)
            response.raise_for_status()  # an error's time is not the service's latency

        return time_calls(call, timing)


def throughput(url: str, photo: bytes, clients: int, duration: float, warmup_per_client: int) -> LoadResult:
    """Completed requests per second of wall time, which runs until the last request
    started in the window has come back."""
    window = _Window(duration)
    barrier = threading.Barrier(clients, action=window.open)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [
            pool.submit(_client, url, photo, window, barrier, warmup_per_client, number) for number in range(clients)
        ]
        results = [future.result() for future in futures]
    return LoadResult(
        clients=clients,
        completed=sum(len(latencies) for latencies, _, _ in results),
        errors=sum(errors for _, errors, _ in results),
        seconds=max(finished for _, _, finished in results) - window.started,
        latencies_ms=tuple(latency for latencies, _, _ in results for latency in latencies),
    )


def _client(
    url: str, photo: bytes, window: _Window, barrier: threading.Barrier, warmup: int, number: int = 0
) -> tuple[list[float], int, float]:
    """(latency of each completed request in ms, errors, when the last answer came)."""
    latencies: list[float] = []
    errors = 0
    with client_session(url, number) as session:
        for _ in range(warmup):  # opens the connection; the answer does not count
            post_photo(session, url, photo)
        barrier.wait()
        last_answer = time.perf_counter()
        while window.still_open(len(latencies)):
            started = time.perf_counter()
            pause = _one_request(session, url, photo)
            last_answer = time.perf_counter()
            if pause is None:
                latencies.append((last_answer - started) * 1000)
            else:
                errors += 1
                time.sleep(pause)
    return latencies, errors, last_answer


def client_session(url: str, number: int) -> requests.Session:
    """Client `number`'s session: from a loopback address of its own (127.0.0.2, ...) when
    the server is on 127.0.0.1. A lab's staff are as many addresses, and the front's
    limits are per address: 64 clients from one address are one client to it."""
    if urlsplit(url).hostname == "127.0.0.1":
        return session_from(f"127.0.0.{2 + number % 250}")
    return requests.Session()


def _one_request(session: requests.Session, url: str, photo: bytes) -> float | None:
    """None on a 200, else how long to wait before the next try: a busy server's
    Retry-After, as a well-behaved client honours it, instead of hammering it."""
    try:
        response = post_photo(session, url, photo)
    except requests.RequestException:
        return CONNECTION_RETRY_S
    if response.status_code == 200:
        return None
    return float(response.headers.get("Retry-After", CONNECTION_RETRY_S))
