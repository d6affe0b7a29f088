"""A normal client's photo latency while hostile clients send the worst files they can.

    python -m bench.hostile_clients [--model-dir aimodel] [--seconds 60] [--hostile 2]

Starts the service with its default settings (one worker, the nginx front where
installed) on 127.0.0.1. Each hostile client connects from an address of its own
(127.0.0.2, 127.0.0.3, ...: the front's limits are per address) and sends, one after
another without pause, the worst files of round 3 (synthetic/hostile_photos.py): a 35-byte GIF that
grows to 9001x9001, a TIFF of 3 million strips, a JPEG of 6 million APP segments, a
PNG of 3.5 million chunks, a PNG whose EXIF claims 10 million values, a 45 MB JSON
`classes` list, and a blank 100 MP PNG padded past the pixels-per-byte bound (the one
that is served: the costliest photo a client can still send). The normal client
(127.0.0.1) sends dog.jpg one after another meanwhile; printed: its latencies, what
the hostile clients got, and the worker's and nginx's peak memory.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from synthetic.hostile_photos import (
    DOG,
    exif_with_values,
    gif_growing_canvas,
    jpeg_with_app_segments,
    padded_png,
    png_with_empty_chunks,
    png_with_exif,
    tiff_with_strips,
)

from .hostile import worker_memory_mb
from .machine import describe_machine
from .server import gunicorn, session_from

ROOT = Path(__file__).resolve().parents[1]


def worst_files() -> list[tuple[str, bytes, str]]:
    classes = b'{"image": "", "classes": [' + b'"x",' * 11_250_000 + b'"x"]}'
    return [
        ("GIF 35 B -> 9001x9001", gif_growing_canvas(), "image/jpeg"),
        ("TIFF 3M strips", tiff_with_strips(), "image/tiff"),
        ("JPEG 6M APP segments", jpeg_with_app_segments(), "image/jpeg"),
        ("PNG 3.5M chunks", png_with_empty_chunks(), "image/png"),
        ("PNG EXIF 10M values", png_with_exif(exif_with_values()), "image/png"),
        ("JSON 45 MB classes", classes, "application/json"),
        ("PNG 100 MP padded", padded_png(10_000, 10_000, 200_000), "image/png"),
    ]


def hostile(url: str, source: str, files, stop: threading.Event, answers: Counter) -> None:
    session = session_from(source)
    while not stop.is_set():
        for name, body, content_type in files:
            if stop.is_set():
                return
            try:
                response = session.post(
                    f"{url}/invocations", data=body, headers={"Content-Type": content_type}, timeout=120
                )
                answers[(name, response.status_code)] += 1
            except requests.RequestException as exc:
                answers[(name, type(exc).__name__)] += 1


def nginx_peak_mb() -> float:
    peak = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("Name", "").strip() == "nginx":
            peak = max(peak, int(fields["VmHWM"].split()[0]) / 1024)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "aimodel")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--hostile", type=int, default=2)
    args = parser.parse_args()
    files = worst_files()
    defaults = {"WORKERS": "1", "REQUEST_DEADLINE_S": "60"}  # as shipped (bench.server sets 600)
    with gunicorn(args.model_dir, defaults) as server:
        alone = [_timed(server.url) for _ in range(10)]
        stop = threading.Event()
        answers: Counter = Counter()
        clients = [
            threading.Thread(target=hostile, args=(server.url, f"127.0.0.{2 + i}", files, stop, answers), daemon=True)
            for i in range(args.hostile)
        ]
        for client in clients:
            client.start()
        latencies, statuses = [], Counter()
        ends = time.monotonic() + args.seconds
        while time.monotonic() < ends:
            seconds, status = _timed(server.url, with_status=True)
            latencies.append(seconds)
            statuses[status] += 1
        stop.set()
        for client in clients:
            client.join(150)
        worker_peak, _ = worker_memory_mb(server.pid)
        nginx_peak = nginx_peak_mb()
    print(describe_machine())
    print(f"{args.hostile} hostile clients for {args.seconds:g} s, default settings")
    print(f"normal client alone: median {statistics.median(alone):.2f} s, max {max(alone):.2f} s")
    print(
        f"normal client meanwhile: {len(latencies)} photos {dict(statuses)}, median "
        f"{statistics.median(latencies):.2f} s, p95 {_p95(latencies):.2f} s, max {max(latencies):.2f} s"
    )
    print(f"worker peak RSS {worker_peak:.0f} MB, nginx peak RSS {nginx_peak:.0f} MB")
    print("hostile answers:")
    for (name, status), count in sorted(answers.items(), key=str):
        print(f"  {name}: {status} x{count}")


def _timed(url: str, with_status: bool = False):
    started = time.perf_counter()
    response = requests.post(f"{url}/invocations", data=DOG, headers={"Content-Type": "image/jpeg"}, timeout=120)
    seconds = time.perf_counter() - started
    return (seconds, response.status_code) if with_status else seconds


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


if __name__ == "__main__":
    main()
