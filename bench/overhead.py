"""Where /invocations spends more than its engine: each stage of the service's own
work on one photo, timed on its own in process, beside a bare onnxruntime
session.run on the same network input and the whole request over HTTP.

    python -m bench.overhead [--model-dir aimodel] [--photo data/dog.jpg] [--runs 50]
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import onnxruntime
import requests

from app.http.factory import create_app
from app.inference.detector import Detector
from app.inference.engines import create_engine
from app.inference.onnx_export import INPUT_NAME
from app.inference.onnx_export.cache import ensure_export
from app.model.files import load_model_description
from app.pipeline.photo import PhotoLimits, process_photo
from app.settings import Settings, available_cores
from app.vision.annotate import annotate
from app.vision.detection import DetectOptions
from app.vision.images import encode_jpeg, open_photo
from app.vision.postprocess import count_by_class
from app.vision.preprocess import fit_to_network

from .report import ms, table, times
from .server import gunicorn
from .timing import Timing, median, time_calls

ROOT = Path(__file__).resolve().parents[1]
BARE = "bare session.run (default options: spinning threads)"
DECODE = "photo header read + JPEG decoded"
ENCODE = "JPEG encode"
PIPELINE = "process_photo as /invocations calls it (decode, detect, annotate, encode)"
FLASK = "the Flask app, no HTTP (its test client: parsing, admission, log, metrics, JSON)"
THROUGH_NGINX = "HTTP /invocations, JSON in, JPEG out, through nginx"
MAX_PIXELS = Settings(model_dir=ROOT).max_image_pixels


def bare_session(path: Path, threads: int, spinning: bool) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def stage_rows(model_dir: Path, photo: bytes, timing: Timing) -> tuple[list[tuple[str, float]], float]:
    model = load_model_description(model_dir)
    threads = available_cores()
    export = ensure_export(model)
    image = open_photo(photo, MAX_PIXELS).decode()
    blob, _ = fit_to_network(image, model.network)
    bare = bare_session(export, threads, spinning=True)
    quiet = bare_session(export, threads, spinning=False)
    engine = create_engine("onnxruntime", model, threads=threads, device="cpu")
    detector = Detector(engine, model)
    detections = detector.detect(image, DetectOptions())
    counts = count_by_class(detections, detector.class_names)
    annotated = annotate(image, detections, counts, channels="BGR")
    picture = encode_jpeg(annotated, channels="BGR")
    body = json.dumps({"image": base64.b64encode(photo).decode()})

    def run(call) -> float:
        return median(time_calls(call, timing))

    bare_ms = run(lambda: bare.run(None, {INPUT_NAME: blob}))
    rows = [
        (BARE, bare_ms),
        ("session.run as the service sets it (no spinning)", run(lambda: quiet.run(None, {INPUT_NAME: blob}))),
        ("JSON body parsed + base64 decoded", run(lambda: base64.b64decode(json.loads(body)["image"]))),
        (DECODE, run(lambda: open_photo(photo, MAX_PIXELS).decode())),
        ("preprocessing (resize, scale, NCHW)", run(lambda: fit_to_network(image, model.network))),
        ("engine.predict (preprocess + run + candidates)", run(lambda: engine.predict(image, 0.25))),
        ("Detector.detect (engine + NMS + one class per box)", run(lambda: detector.detect(image, DetectOptions()))),
        ("annotate", run(lambda: annotate(image, detections, counts, channels="BGR"))),
        (ENCODE, run(lambda: encode_jpeg(annotated, channels="BGR"))),
        (
            "base64 + JSON answer",
            run(lambda: json.dumps({"img": base64.b64encode(picture).decode("ascii"), "stat": counts})),
        ),
    ]
    limits = PhotoLimits(max_pixels=MAX_PIXELS)
    rows.append(
        (
            PIPELINE,
            run(lambda: process_photo(photo, detector, DetectOptions(), limits, annotated=True)),
        )
    )
    settings = Settings.from_env({"MODEL_DIR": str(model_dir), "BACKEND": "onnxruntime", "PRECISION": "fp32"})
    client = create_app(settings, detector).test_client()
    rows.append(
        (
            FLASK,
            run(lambda: client.post("/invocations", data=body, content_type="application/json").get_data()),
        )
    )
    return rows, bare_ms


def within_target(rows: list[tuple[str, float]]) -> str:
    """The issue's measure: the whole request against the bare session plus the photo's
    decode and the answer's encode, and where the rest goes."""
    found = dict(rows)
    bare, decode = found[BARE], found[DECODE]
    encode = found[ENCODE]
    request = found[THROUGH_NGINX]
    floor = bare + decode + encode
    pipeline, flask = found[PIPELINE], found[FLASK]
    return "\n".join(
        [
            f"- whole request / bare session.run: {request:.1f} / {bare:.1f} ms = {request / bare:.2f}x; less the "
            f"photo's decode and the answer's encode ({decode + encode:.1f} ms): "
            f"{(request - decode - encode) / bare:.2f}x (target <= 1.2)",
            f"- of the {request - floor:.1f} ms more: the service's own pipeline around the forward pass "
            f"{pipeline - floor:.1f} ms (preprocessing, candidates, NMS, drawing), Flask (parsing, admission, log, "
            f"metrics, JSON) {flask - pipeline:.1f} ms, HTTP (client, nginx, gunicorn) {request - flask:.1f} ms",
        ]
    )


def http_ms(model_dir: Path, photo: bytes, timing: Timing, front: str) -> float:
    body = json.dumps({"image": base64.b64encode(photo).decode()})
    with gunicorn(model_dir, {"WORKERS": "1", "FRONT": front}) as server, requests.Session() as session:

        def call():
            session.post(
                f"{server.url}/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=60
            ).raise_for_status()

        return median(time_calls(call, timing))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "aimodel")
    parser.add_argument("--photo", type=Path, default=ROOT / "data" / "dog.jpg")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    photo = args.photo.read_bytes()
    timing = Timing(warmup=5, runs=args.runs)
    rows, bare = stage_rows(args.model_dir, photo, timing)
    rows.append((THROUGH_NGINX, http_ms(args.model_dir, photo, timing, "auto")))
    rows.append(("HTTP /invocations, gunicorn alone (FRONT=none)", http_ms(args.model_dir, photo, timing, "none")))
    print(f"### Where the time goes: {args.photo.name}, median of {args.runs} after 5 warm-up\n")
    print(table(("stage", "median ms", "x bare session.run"), [(name, ms(v), times(v / bare)) for name, v in rows]))
    print(within_target(rows))


if __name__ == "__main__":
    main()
