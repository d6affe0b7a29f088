#!/usr/bin/env python3
"""Per-image latency of each inference engine, in-process, on one photo.

  .venv/bin/python scripts/benchmark_engines.py [--photo data/dog.jpg] [--runs 20]
      [--darknet-lib /usr/lib/darknet/libdarknet.so ...]

Each engine is timed on its own, one after the other (interleaving them evicts the
caches and skews the slower one): warm-up, then `runs` calls of Detector.detect,
which is what /invocations pays for inference (preprocessing, forward pass, boxes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.detector import Detector  # noqa: E402
from app.engines import EngineUnavailable, create_engine  # noqa: E402
from app.images import decode_image  # noqa: E402
from app.model_files import load_model_description  # noqa: E402
from app.settings import available_cores  # noqa: E402


def time_engine(detector: Detector, image, runs: int) -> list[float]:
    for _ in range(3):
        detector.detect(image)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        detector.detect(image)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "aimodel")
    parser.add_argument("--photo", type=Path, default=ROOT / "data" / "dog.jpg")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--darknet-lib", action="append", default=[], help="a libdarknet.so to time (repeatable)")
    args = parser.parse_args()

    model = load_model_description(args.model_dir)
    image = decode_image(args.photo.read_bytes(), max_pixels=10**9)
    engines = [("opencv", None)] + [("darknet", lib) for lib in args.darknet_lib or ["/usr/lib/darknet/libdarknet.so"]]
    print(
        f"{model.files.weights.name} at {model.network.width}x{model.network.height}, {args.photo.name}, "
        f"{args.threads} threads, median of {args.runs}"
    )
    for backend, library in engines:
        if library:
            os.environ["LIBDARKNET_PATH"] = library
        try:
            engine = create_engine(backend, model, threads=args.threads, device="cpu")
        except EngineUnavailable as exc:
            print(f"{backend:8} unavailable: {exc}")
            continue
        timings = time_engine(Detector(engine, model), image, args.runs)
        where = f" ({engine.library.flavour}, {library})" if library else ""
        print(f"{backend:8} median {statistics.median(timings):7.1f} ms  min {min(timings):7.1f} ms{where}")


if __name__ == "__main__":
    main()
