"""The project's benchmark: one run, one model, one photo; Markdown tables on stdout.

  .venv/bin/python -m bench.run [--model-dir aimodel] [--photo data/dog.jpg] [--runs 30]
      [--duration 10] [--darknet-lib PATH ...] [--skip-production] [--quick]

1. engine latency in process, and the whole HTTP path, against this CPU's floor;
2. the service's image work on a 4000x3000 photo, against bare OpenCV decode + encode;
3. throughput and latency of the service with its default settings, 1 to 64 clients,
   and the same with dynamic batching (MAX_BATCH=4);
4. the production architecture (YOLOv3 at 832, 6 classes, random weights) on a
   2000x2000 photo: engine latency and throughput.
Progress goes to stderr, so stdout can be pasted into docs/performance.md as it is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/run.py` as well as `python -m bench.run`
    sys.path.insert(0, str(ROOT))

from app.inference.detector import Detector  # noqa: E402
from app.inference.engines import create_engine  # noqa: E402
from app.model.files import ModelDescription, load_model_description  # noqa: E402
from app.settings import available_cores  # noqa: E402
from app.vision.detection import Detection  # noqa: E402
from app.vision.images import decode_image  # noqa: E402
from app.vision.postprocess import count_by_class  # noqa: E402
from bench.engines import (  # noqa: E402
    HTTP,
    LatencyRow,
    engine_specs,
    engine_targets,
    floor_lines,
    latency_table,
    prepare_int8,
    time_engines,
)
from bench.image_work import MAX_PIXELS, bare_decode_encode, resized_jpeg, service_image_work  # noqa: E402
from bench.load import LoadResult, sequential_latency, throughput, warm_up  # noqa: E402
from bench.machine import describe_machine, matmul_gflops, model_flops  # noqa: E402
from bench.report import ms, progress, table, target, times  # noqa: E402
from bench.server import ServerError, gunicorn  # noqa: E402
from bench.timing import Timing, median, p90, time_calls  # noqa: E402
from synthetic.architectures import write_random_model, yolov3  # noqa: E402

WARMUP = 5
QUICK_RUNS, QUICK_DURATION = 5, 1.0
CLIENTS = (1, 8, 32, 64)  # 64: the default queue's depth, served without a refusal
PRODUCTION_CLIENTS = (1, 4, 8)  # seconds a photo: 64 clients would wait minutes for a first answer
BIG_PHOTO = (4000, 3000)
PRODUCTION_PHOTO = (2000, 2000)
IMAGE_WORK_WARMUP, IMAGE_WORK_MIN_RUNS = 2, 10
BATCHING = {"MAX_BATCH": "4", "MAX_BATCH_DELAY_MS": "2"}
DEFAULT_LIBDARKNET = Path("/usr/lib/darknet/libdarknet.so")
CALIBRATION_PHOTOS = ROOT / "data"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = available_cores()
    photo = args.photo.read_bytes()
    model = load_model_description(args.model_dir)
    # Before any engine exists: an idle thread pool still spinning would slow BLAS down.
    gflops = matmul_gflops()
    print(describe_machine(), flush=True)
    try:
        engine_latency(args, model, photo, gflops, cores)
        image_work(model, photo, cores, args.runs)
        what = f"{args.photo.name} (raw JPEG)"
        service_throughput("Throughput", args.model_dir, photo, what, args.duration, 1)
        service_throughput("Throughput with batching", args.model_dir, photo, what, args.duration, 1, BATCHING)
        if not args.skip_production:
            production(args, photo, gflops, cores)
    except ServerError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "aimodel")
    parser.add_argument("--photo", type=Path, default=ROOT / "data" / "dog.jpg")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per engine (after 5 warm-up calls)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per client count")
    parser.add_argument("--darknet-lib", action="append", default=[], help="a libdarknet.so to time (repeatable)")
    parser.add_argument("--skip-production", action="store_true", help="leave out the YOLOv3 832 section")
    parser.add_argument(
        "--quick", action="store_true", help=f"a smoke test: --runs {QUICK_RUNS} --duration {QUICK_DURATION:g}"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.duration = QUICK_RUNS, QUICK_DURATION
    if not args.darknet_lib and DEFAULT_LIBDARKNET.is_file():
        args.darknet_lib = [str(DEFAULT_LIBDARKNET)]
    args.model_dir = args.model_dir.resolve()  # gunicorn runs in the repository root
    return args


def engine_latency(args: argparse.Namespace, model: ModelDescription, photo: bytes, gflops: float, cores: int) -> None:
    image = decode_image(photo, MAX_PIXELS)
    timing = Timing(WARMUP, args.runs)
    notes = [prepare_int8(model, CALIBRATION_PHOTOS, cores)]
    if not args.darknet_lib:
        notes.append(f"- darknet: not timed: no --darknet-lib given and none at {DEFAULT_LIBDARKNET}")
    rows, unavailable = time_engines(engine_specs(args.darknet_lib), model, image, cores, timing)
    progress("timing HTTP /invocations")
    with gunicorn(args.model_dir, {"WORKERS": "1", "BACKEND": "onnxruntime"}) as server:
        samples = sequential_latency(server.url, photo, timing)
    rows.append(LatencyRow("HTTP /invocations (onnxruntime fp32)", HTTP, samples))
    flops = model_flops(model)
    floor_ms = flops / gflops / 1e6
    print(
        f"\n### Engine latency: {_model_name(model)}, {args.photo.name} {image.shape[1]}x{image.shape[0]}, "
        f"{cores} threads, median of {args.runs} calls after {WARMUP} warm-up\n"
    )
    print(latency_table(rows, floor_ms))
    print("\n" + floor_lines(flops, gflops) + "\n")
    print("\n".join([*notes, *unavailable, *engine_targets(rows, floor_ms)]), flush=True)


def image_work(model: ModelDescription, photo: bytes, cores: int, runs: int) -> None:
    progress(f"image work on a {BIG_PHOTO[0]}x{BIG_PHOTO[1]} JPEG")
    jpeg = resized_jpeg(photo, BIG_PHOTO)
    detections = _detections(model, jpeg, cores)
    counts = count_by_class(detections, model.class_names)
    timing = Timing(IMAGE_WORK_WARMUP, max(IMAGE_WORK_MIN_RUNS, runs))
    bare = time_calls(lambda: bare_decode_encode(jpeg), timing)
    service = time_calls(lambda: service_image_work(jpeg, detections, counts), timing)
    print(
        f"\n### Image work on a {BIG_PHOTO[0]}x{BIG_PHOTO[1]} JPEG ({len(detections)} detections drawn), "
        f"median of {timing.runs} after {timing.warmup} warm-up\n"
    )
    rows = [
        ("bare: cv2.imdecode + cv2.imencode", bare),
        ("service: the pipeline's decode + annotated JPEG + JSON body", service),
    ]
    print(table(("work", "median ms", "p90 ms"), [(label, ms(median(s)), ms(p90(s))) for label, s in rows]))
    print("\n" + target("service / bare", median(service) / median(bare), 1.3), flush=True)


def _detections(model: ModelDescription, jpeg: bytes, cores: int) -> list[Detection]:
    """Once, outside the timing; the engine is gone before the timing starts."""
    engine = create_engine("onnxruntime", model, threads=cores, device="cpu")
    return Detector(engine, model).detect(decode_image(jpeg, MAX_PIXELS))


def service_throughput(
    title: str,
    model_dir: Path,
    photo: bytes,
    what: str,
    duration: float,
    warmup_per_client: int,
    settings: dict[str, str] | None = None,
    clients_counts: tuple[int, ...] = CLIENTS,
) -> None:
    """The service with its default workers, threads and engine for this machine
    (and `settings` on top)."""
    progress(f"{title}: starting gunicorn")
    with gunicorn(model_dir, settings or {}) as server:
        setup = f"{server.workers()} worker(s), {server.engine()}"
        warm_up(server.url, photo)
        results = []
        for clients in clients_counts:
            progress(f"{title}: {clients} client(s)")
            results.append(throughput(server.url, photo, clients, duration, warmup_per_client))
    changed = ", ".join(f"{key}={value}" for key, value in (settings or {}).items())
    print(
        f"\n### {title}: POST /invocations {what}, default settings{' but ' + changed if changed else ''} "
        f"({setup}), {duration:g} s per client count\n"
    )
    print(throughput_table(results) + "\n")
    for result in results[1:]:
        print(target(f"{result.clients} clients / 1 client", result.rate / results[0].rate, 0.9, at_least=True))
        print(target(f"errors at {result.clients} clients (the queue takes 64)", result.errors, 0))
    sys.stdout.flush()


def throughput_table(results: list[LoadResult]) -> str:
    single = results[0].rate
    header = ("clients", "requests/s", "x 1 client", "p50 ms", "p99 ms", "errors", "completed", "seconds")
    return table(header, [_throughput_row(result, single) for result in results])


def _throughput_row(result: LoadResult, single: float) -> tuple[str, ...]:
    rate = f"{result.rate:.2f}"
    return (
        str(result.clients),
        rate,
        times(result.rate / single),
        ms(result.percentile(0.5)),
        ms(result.percentile(0.99)),
        str(result.errors),
        str(result.completed),
        f"{result.seconds:.1f}",
    )


def production(args: argparse.Namespace, photo: bytes, gflops: float, cores: int) -> None:
    progress("production architecture: writing YOLOv3 832 with random weights")
    with tempfile.TemporaryDirectory(prefix="bench-production-") as workdir:
        model_dir = write_random_model(Path(workdir), yolov3(size=832, classes=6), name="yolov3")
        model = load_model_description(model_dir)
        jpeg = resized_jpeg(photo, PRODUCTION_PHOTO)
        image = decode_image(jpeg, MAX_PIXELS)
        # Each forward pass is ~260 GFLOP: fewer calls say as much.
        timing = Timing(warmup=2, runs=max(3, args.runs // 5))
        rows, unavailable = time_engines(engine_specs([], int8=False), model, image, cores, timing)
        flops = model_flops(model)
        print(
            f"\n### Production architecture: {_model_name(model)} (random weights), "
            f"{PRODUCTION_PHOTO[0]}x{PRODUCTION_PHOTO[1]} photo, {cores} threads, "
            f"median of {timing.runs} calls after {timing.warmup} warm-up\n"
        )
        print(latency_table(rows, flops / gflops / 1e6))
        print("\n" + floor_lines(flops, gflops))
        if unavailable:
            print("\n".join(unavailable))
        sys.stdout.flush()
        what = f"{PRODUCTION_PHOTO[0]}x{PRODUCTION_PHOTO[1]} JPEG (tiled)"
        # A request takes seconds: a warm-up per client would cost more than it teaches.
        service_throughput(
            "Production throughput", model_dir, jpeg, what, args.duration, 0, clients_counts=PRODUCTION_CLIENTS
        )


def _model_name(model: ModelDescription) -> str:
    return f"{model.files.cfg.stem} {model.network.width}x{model.network.height}, {len(model.class_names)} classes"


if __name__ == "__main__":
    sys.exit(main())
