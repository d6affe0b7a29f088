"""Slow, idle and stalled clients beside a normal one, against a real server.

    python -m bench.slow_clients [--model-dir aimodel] [--seconds 15]

For each case, opens the hostile connections, then for `--seconds` pings /ping every
0.2 s and has one normal client post dog.jpg in a loop; prints the slowest /ping, the
pings that failed (no answer within 5 s), and the normal client's photos answered and
failed. The load tests (__tests__/test_queue.py) run the same cases.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .server import gunicorn

ROOT = Path(__file__).resolve().parents[1]
DOG = (ROOT / "data" / "dog.jpg").read_bytes()
PING_TIMEOUT_S = 5


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def one_byte_then_nothing(port: int, stop: threading.Event) -> None:
    with _connect(port) as sock:
        sock.sendall(b"G")
        stop.wait()


def idle(port: int, stop: threading.Event) -> None:
    with _connect(port):
        stop.wait()


def slow_body(port: int, stop: threading.Event) -> None:
    """Whole headers of a photo upload, then its body at a byte a second."""
    head = f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(DOG)}\r\n\r\n"
    _trickle(port, stop, head.encode(), DOG)


def trickle_everything(port: int, stop: threading.Event) -> None:
    """Headers and body at a byte a second."""
    head = f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(DOG)}\r\n\r\n"
    _trickle(port, stop, b"", head.encode() + DOG)


def _trickle(port: int, stop: threading.Event, first: bytes, rest: bytes) -> None:
    try:
        with _connect(port) as sock:
            sock.sendall(first)
            for index in range(len(rest)):
                if stop.wait(1.0):
                    return
                sock.sendall(rest[index : index + 1])
    except OSError:  # the server may close a connection that is too slow: that is its right
        return


CASES: dict[str, tuple[Callable[[int, threading.Event], None], int]] = {
    "8 connections send one byte, then nothing": (one_byte_then_nothing, 8),
    "30 idle connections": (idle, 30),
    "7 uploads send their body at a byte a second": (slow_body, 7),
    "50 connections trickle a request at a byte a second": (trickle_everything, 50),
}


@dataclass
class Outcome:
    ping_seconds: list[float] = field(default_factory=list)
    pings_failed: int = 0
    photos_answered: int = 0
    photos_failed: int = 0

    @property
    def slowest_ping(self) -> float:
        return max(self.ping_seconds, default=float("nan"))


def run_case(url: str, port: int, hostile: Callable[[int, threading.Event], None], count: int, seconds: float):
    stop = threading.Event()
    attackers = [threading.Thread(target=hostile, args=(port, stop), daemon=True) for _ in range(count)]
    for thread in attackers:
        thread.start()
    time.sleep(1.0)  # the connections are open and stalled before anyone else comes
    outcome = Outcome()
    until = time.monotonic() + seconds

    def pinger():
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                requests.get(f"{url}/ping", timeout=PING_TIMEOUT_S).raise_for_status()
                outcome.ping_seconds.append(time.monotonic() - started)
            except requests.RequestException:
                outcome.pings_failed += 1
            time.sleep(0.2)

    def photographer():
        while time.monotonic() < until:
            try:
                response = requests.post(
                    f"{url}/invocations?return_image=false",
                    data=DOG,
                    headers={"Content-Type": "image/jpeg"},
                    timeout=10,
                )
                if response.status_code == 200 and response.json()["stat"]["dog"] == 1:
                    outcome.photos_answered += 1
                else:
                    outcome.photos_failed += 1
            except requests.RequestException:
                outcome.photos_failed += 1

    helpers = [threading.Thread(target=pinger), threading.Thread(target=photographer)]
    for thread in helpers:
        thread.start()
    for thread in helpers:
        thread.join()
    stop.set()
    for thread in attackers:
        thread.join(5)
    return outcome


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "aimodel")
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    print(f"| case ({args.seconds:g} s each) | slowest /ping s | pings failed | photos answered | photos failed |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (hostile, count) in CASES.items():
        with gunicorn(args.model_dir, {}) as server:
            outcome = run_case(server.url, port_of(server.url), hostile, count, args.seconds)
        print(
            f"| {name} | {outcome.slowest_ping:.2f} | {outcome.pings_failed} | {outcome.photos_answered} | "
            f"{outcome.photos_failed} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
