"""Hostile photos, made on the fly (none is committed), and what they cost a real server.

    python -m bench.hostile [--model-dir aimodel] [--repeat 4]

Starts gunicorn with the service's default settings on 127.0.0.1 (one fresh server per
case, so each peak is that case's own), sends each photo (several copies at once where
memory is the point, with tiling=off so the figure is the photo's memory, not minutes
of tiles), and prints per case the statuses, the seconds to the last answer, the
worker's peak RSS (VmHWM from /proc) and its RSS a second after. The photos are
synthetic/hostile_photos.py's, the ones the tests send.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from synthetic.hostile_photos import (
    ROOT,
    dds_with_unknown_flags,
    exif_with_values,
    gif_growing_canvas,
    icns_holding_png,
    ico_holding_png,
    jpeg_claiming,
    jpeg_cut_with_end_marker,
    jpeg_with_app_segments,
    jpeg_with_repeated_scans,
    padded_png,
    png,
    png_with_empty_chunks,
    png_with_exif,
    png_with_text,
    tiff_with_strips,
    webp_lossless,
)
from synthetic.phone_photos import google_motion_photo, mp4_like, phone_jpeg

from .server import gunicorn, gunicorn_workers

# name -> (photo, content type, copies sent at once[, query parameters]); several copies
# go with tiling=off unless the case says otherwise.
CaseMaker = Callable[[], bytes]
CASES: dict[str, tuple] = {
    "GIF of 35 bytes, canvas grown to 9001x9001": (gif_growing_canvas, "image/jpeg", 3),
    "GIF grown to 9001x9001, 84 KB of comments": (lambda: gif_growing_canvas(padding=84_000), "image/jpeg", 3),
    "1-bit PNG 10000x10000, 120 KB of text chunks": (lambda: png_with_text(10_000, 10_000, 120_000), "image/png", 3),
    "12 MP Motion Photo, 6 MB of video": (
        lambda: google_motion_photo(phone_jpeg(), mp4_like(6_000_000)),
        "image/jpeg",
        1,
        {"tiling": "off"},
    ),
    "TIFF of 3M strips": (tiff_with_strips, "image/tiff", 3),
    "JPEG of 6M APP segments": (jpeg_with_app_segments, "image/jpeg", 1),
    "PNG of 3.5M empty chunks": (png_with_empty_chunks, "image/png", 1),
    "PNG whose EXIF claims 10M values": (lambda: png_with_exif(exif_with_values()), "image/png", 1),
    "JSON body, a 45 MB classes list": (
        lambda: b'{"image": "", "classes": [' + b'"x",' * 11_250_000 + b'"x"]}',
        "application/json",
        1,
    ),
    "threshold=0, 4000x3000 tiled": (lambda: padded_png(4000, 3000, 20_000), "image/png", 1, {"threshold": "0"}),
    "threshold=0.25, 4000x3000 tiled": (lambda: padded_png(4000, 3000, 20_000), "image/png", 1, {}),
    "lossless WebP 10000x10000": (lambda: webp_lossless(10_000, 10_000), "image/webp", 4),
    "PNG RGB 10000x10000": (lambda: png(10_000, 10_000), "image/png", 4),
    "PNG RGBA16 10000x10000": (lambda: png(10_000, 10_000, 16, 6), "image/png", 4),
    "JPEG header claiming 10000x10000": (lambda: jpeg_claiming(10_000, 10_000), "image/jpeg", 1),
    "progressive JPEG, a scan x10000": (jpeg_with_repeated_scans, "image/jpeg", 1),
    "JPEG cut to a third + end marker": (jpeg_cut_with_end_marker, "image/jpeg", 1),
    "ICO holding a 20000x20000 PNG": (lambda: ico_holding_png(20_000, 20_000), "image/jpeg", 3),
    "ICNS holding a 20000x20000 PNG": (lambda: icns_holding_png(20_000, 20_000), "image/jpeg", 1),
    "DDS with unknown pixel format": (dds_with_unknown_flags, "image/jpeg", 1),
}


@dataclass(frozen=True)
class CaseResult:
    statuses: list[int]
    codes: list[str]
    seconds: float
    peak_rss_mb: float
    rss_after_mb: float


def send_at_once(url: str, photo: bytes, content_type: str, copies: int, params: dict) -> list[requests.Response]:
    def send(_):
        return requests.post(
            f"{url}/invocations", data=photo, headers={"Content-Type": content_type}, params=params, timeout=300
        )

    with ThreadPoolExecutor(copies) as pool:
        return list(pool.map(send, range(copies)))


def worker_memory_mb(master_pid: int) -> tuple[float, float]:
    """(peak, current) resident memory of gunicorn's one worker."""
    (worker,) = gunicorn_workers(master_pid)
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{worker}/status").read_text().splitlines())
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def measure_case(
    model_dir: Path, photo: bytes, content_type: str, copies: int, params: dict | None = None
) -> CaseResult:
    if params is None:
        params = {"tiling": "off"} if copies > 1 else {}
    with gunicorn(model_dir, {"WORKERS": "1"}) as server:
        started = time.perf_counter()
        responses = send_at_once(server.url, photo, content_type, copies, params)
        seconds = time.perf_counter() - started
        peak, _ = worker_memory_mb(server.pid)
        time.sleep(1)
        _, after = worker_memory_mb(server.pid)
    codes = [r.json()["error"]["code"] if r.status_code != 200 else "ok" for r in responses]
    return CaseResult([r.status_code for r in responses], codes, seconds, peak, after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "aimodel")
    parser.add_argument("--only", help="a substring of the case names to run")
    args = parser.parse_args()
    print("| photo | copies at once | answers | seconds to the last answer | worker peak RSS MB | RSS after MB |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for name, (make, content_type, copies, *params) in CASES.items():
        if args.only and args.only not in name:
            continue
        result = measure_case(args.model_dir, make(), content_type, copies, *params)
        answers = ", ".join(f"{status} {code}" for status, code in zip(result.statuses, result.codes, strict=True))
        print(
            f"| {name} | {copies} | {answers} | {result.seconds:.1f} | "
            f"{result.peak_rss_mb:.0f} | {result.rss_after_mb:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
