#!/usr/bin/env python3
"""Measure the service as a user meets it. Standard library only, so it runs before
any virtual environment exists.

  python3 scripts/benchmark.py                # fresh clone: cold start of ./run.sh, then latency
  python3 scripts/benchmark.py --url URL      # latency of a service already running

Cold start is the time from launching ./run.sh in a fresh clone of this repository
(venv, pip install, demo model download, model load) to the first 200 from /ping.
Latency is POST /invocations with data/dog.jpg as a raw JPEG body, one at a time.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:  # nosec B310
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def latency(url: str, photo: Path, requests: int, warmup: int = 2) -> list[float]:
    body = photo.read_bytes()
    timings = []
    for index in range(warmup + requests):
        request = urllib.request.Request(
            f"{url}/invocations", data=body, headers={"Content-Type": "image/jpeg"}, method="POST"
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:  # nosec B310
            response.read()
        if index >= warmup:
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def report_latency(url: str, photo: Path, requests: int) -> None:
    timings = sorted(latency(url, photo, requests))
    p90 = timings[max(0, round(0.9 * len(timings)) - 1)]
    print(
        f"POST /invocations {photo.name} x{len(timings)}: median {statistics.median(timings):.1f} ms, "
        f"p90 {p90:.1f} ms, min {timings[0]:.1f} ms, max {timings[-1]:.1f} ms"
    )


def cold_start(requests: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        clone = Path(workdir) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        log = (Path(workdir) / "service.log").open("w")
        started = time.perf_counter()
        service = subprocess.Popen(
            ["./run.sh"],
            cwd=clone,
            env={**os.environ, "PORT": str(port)},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            while not ping(url):
                if service.poll() is not None:
                    sys.exit(f"./run.sh exited with {service.returncode}; see {log.name}")
                time.sleep(0.1)
            print(f"cold start of ./run.sh in a fresh clone: {time.perf_counter() - started:.1f} s to /ping 200")
            report_latency(url, clone / "data" / "dog.jpg", requests)
        finally:
            os.killpg(service.pid, signal.SIGTERM)
            service.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="measure a running service instead of a fresh clone")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--photo", type=Path, default=ROOT / "data" / "dog.jpg")
    args = parser.parse_args()
    if args.url:
        if not args.url.startswith(("http://", "https://")):
            parser.error("--url must be an http:// or https:// address")
        report_latency(args.url.rstrip("/"), args.photo, args.requests)
    else:
        cold_start(args.requests)


if __name__ == "__main__":
    main()
