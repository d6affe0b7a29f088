"""The GPU check, run by scripts/gpu_check.sh on a machine with a GPU: does each GPU
engine count as the CPU does, and how fast is it? Markdown on stdout, progress on stderr.

  .venv/bin/python -m bench.gpu_check --engine darknet:/path/libdarknet.so --engine onnxruntime
      [--device cuda] [--batches 1,4,8] [--clients 1,8,32] [--duration 5] [--skip-production]

For each engine: the service (gunicorn, as in production) with BACKEND and DEVICE set,
the sample photos in data/ counted through it against OpenCV on the CPU (an independent
implementation), then requests/s and p50/p99 at each client count for each MAX_BATCH;
then the production architecture (YOLOv3 at 832, 6 classes, random weights) on a
2000x2000 photo at the smallest and largest MAX_BATCH. `--device cpu` is the dry run
any machine can do. Exits 1 when an engine does not start or counts differently.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/gpu_check.py` as well as `python -m bench.gpu_check`
    sys.path.insert(0, str(ROOT))

from app.inference.detector import Detector  # noqa: E402
from app.inference.engines import create_engine  # noqa: E402
from app.model.files import load_model_description  # noqa: E402
from app.vision.images import decode_image  # noqa: E402
from app.vision.postprocess import count_by_class  # noqa: E402
from bench.image_work import MAX_PIXELS, resized_jpeg  # noqa: E402
from bench.machine import describe_machine  # noqa: E402
from bench.report import progress, table  # noqa: E402
from bench.run import service_throughput  # noqa: E402
from bench.server import ServerError, gunicorn  # noqa: E402
from synthetic.architectures import write_random_model, yolov3  # noqa: E402

PHOTOS = sorted((ROOT / "data").glob("*.jpg"))
PRODUCTION_PHOTO = (2000, 2000)
PRODUCTION_CLIENTS = (1, 8)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(describe_machine(), flush=True)
    reference = cpu_counts(args.model_dir)
    failures = []
    for name, library in args.engine:
        settings = engine_settings(name, library, args.device)
        try:
            failures += check_counts(name, args.model_dir, settings, reference, args.device)
            photo = (ROOT / "data" / "dog.jpg").read_bytes()
            for batch in args.batches:
                service_throughput(
                    f"{name} on {args.device}, MAX_BATCH={batch}",
                    args.model_dir,
                    photo,
                    "dog.jpg (raw JPEG)",
                    args.duration,
                    1,
                    {**settings, "MAX_BATCH": str(batch), "MAX_BATCH_DELAY_MS": "2"},
                    clients_counts=tuple(args.clients),
                )
            if not args.skip_production:
                production(name, settings, args)
        except ServerError as exc:
            failures.append(f"{name}: the service did not start: {str(exc).splitlines()[0]}")
            progress(str(exc))
    print("\n" + ("\n".join(f"- FAIL {failure}" for failure in failures) or "- every engine counted as the CPU"))
    return 1 if failures else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "aimodel")
    parser.add_argument(
        "--engine",
        action="append",
        type=_engine,
        required=True,
        help="darknet:/path/libdarknet.so or onnxruntime (repeat for several)",
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--batches", type=_numbers, default=[1, 4, 8])
    parser.add_argument("--clients", type=_numbers, default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per client count")
    parser.add_argument("--skip-production", action="store_true")
    return parser.parse_args(argv)


def _engine(value: str) -> tuple[str, str | None]:
    name, _, library = value.partition(":")
    if name not in ("darknet", "onnxruntime") or (name == "darknet") != bool(library):
        raise argparse.ArgumentTypeError("darknet:/path/libdarknet.so or onnxruntime")
    return name, library or None


def _numbers(value: str) -> list[int]:
    return [int(part) for part in value.split(",")]


def engine_settings(name: str, library: str | None, device: str) -> dict[str, str]:
    settings = {"BACKEND": name, "DEVICE": device, "WORKERS": "1"}
    if library:
        settings["LIBDARKNET_PATH"] = library
    return settings


def cpu_counts(model_dir: Path) -> dict[str, dict[str, int]]:
    """The reference: each sample photo counted by OpenCV's DNN on the CPU."""
    progress("reference: the sample photos counted by OpenCV on the CPU")
    model = load_model_description(model_dir)
    detector = Detector(create_engine("opencv", model, threads=4, device="cpu"), model)
    counts = {}
    for photo in PHOTOS:
        found = detector.detect(decode_image(photo.read_bytes(), MAX_PIXELS))
        counts[photo.name] = _nonzero(count_by_class(found, model.class_names))
    return counts


def check_counts(
    name: str, model_dir: Path, settings: dict[str, str], reference: dict[str, dict[str, int]], device: str
) -> list[str]:
    """The sample photos through the service on `device`: the counts the CPU found."""
    progress(f"{name}: counting the sample photos on {device}")
    failures, rows = [], []
    with gunicorn(model_dir, settings) as server:
        served = requests.get(f"{server.url}/model", timeout=10).json()
        if served["device"] != device:
            failures.append(f"{name}: asked for {device}, serves on {served['device']}")
        for photo in PHOTOS:
            answer = requests.post(
                f"{server.url}/invocations?return_image=false",
                data=photo.read_bytes(),
                headers={"Content-Type": "image/jpeg"},
                timeout=120,
            )
            counts = _nonzero(answer.json().get("stat", {})) if answer.ok else {"error": answer.status_code}
            same = counts == reference[photo.name]
            rows.append((photo.name, _text(counts), _text(reference[photo.name]), "same" if same else "DIFFERENT"))
            if not same:
                failures.append(f"{name}: {photo.name} counted {_text(counts)}, the CPU {_text(reference[photo.name])}")
    build = served.get("engine_build") or served["engine"]
    print(f"\n### Counts: {name} on {served['device']} ({build}) vs OpenCV on the CPU\n")
    print(table(("photo", name, "OpenCV, CPU", ""), rows), flush=True)
    return failures


def production(name: str, settings: dict[str, str], args: argparse.Namespace) -> None:
    """The production-size network, tiled over a big photo, at the extreme MAX_BATCHes."""
    progress(f"{name}: production architecture, YOLOv3 832 with random weights")
    with tempfile.TemporaryDirectory(prefix="gpu-check-production-") as workdir:
        model_dir = write_random_model(Path(workdir), yolov3(size=832, classes=6), name="yolov3")
        jpeg = resized_jpeg((ROOT / "data" / "dog.jpg").read_bytes(), PRODUCTION_PHOTO)
        for batch in sorted({min(args.batches), max(args.batches)}):
            service_throughput(
                f"Production, {name} on {args.device}, MAX_BATCH={batch}",
                model_dir,
                jpeg,
                f"{PRODUCTION_PHOTO[0]}x{PRODUCTION_PHOTO[1]} JPEG (tiled), yolov3 832, 6 classes",
                args.duration,
                0,
                {**settings, "MAX_BATCH": str(batch), "MAX_BATCH_DELAY_MS": "2"},
                clients_counts=PRODUCTION_CLIENTS,
            )


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {name: count for name, count in counts.items() if count}


def _text(counts: dict) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "nothing"


if __name__ == "__main__":
    sys.exit(main())
