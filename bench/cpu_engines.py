"""The lab's model on this CPU: seconds per big tiled photo for each engine and precision.

  .venv/bin/python -m bench.cpu_engines [--rounds 2] [--photo data/dog.jpg] [--size 3400x2600]
      [--skip-int8] [--network 832]

YOLOv3 at 832 with 6 classes (the production architecture, random weights from
synthetic/architectures.py, exported by the project's exporter), on a photo scaled to
3400x2600 and counted the way the service counts it (whole-photo pass plus tiles,
8 a batch). Runs alternate (A, B, C, then C, B, A, ...) so a shared machine's slow
minute slows every engine alike; the table gives each one's median and the median of
its per-round ratio to onnxruntime fp32, the service as it was. Gates are not applied:
this times every precision the CPU runs (agreement is `python -m app calibrate`'s
job, on real photos; with random weights counts are only a sanity check).
Progress on stderr, the Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.inference.detector import Detector  # noqa: E402
from app.inference.engines import EngineUnavailable  # noqa: E402
from app.inference.int8.cpu_class import cpu_class, cpu_has_bf16  # noqa: E402
from app.inference.onnx_export.cache import ensure_export, export_paths  # noqa: E402
from app.model.files import ModelDescription, load_model_description  # noqa: E402
from app.settings import available_cores  # noqa: E402
from app.vision.images import decode_image  # noqa: E402
from app.vision.postprocess import count_by_class  # noqa: E402
from app.vision.tiling import DEFAULT_OVERLAP, tile_grid  # noqa: E402
from bench.image_work import MAX_PIXELS, resized_jpeg  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from bench.report import progress, table  # noqa: E402
from synthetic.architectures import write_random_model, yolov3  # noqa: E402

REFERENCE = "onnxruntime fp32"
CALIBRATION_TILES = 4  # int8 scales from a few tiles of the photo: enough to time, not to judge


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = available_cores()
    photo = decode_image(resized_jpeg(args.photo.read_bytes(), args.size), MAX_PIXELS)
    with tempfile.TemporaryDirectory(prefix="bench-cpu-engines-") as workdir:
        progress(f"writing YOLOv3 {args.network} (6 classes, random weights) and exporting it")
        model = load_model_description(
            write_random_model(Path(workdir), yolov3(size=args.network, classes=6), name="yolov3")
        )
        ensure_export(model)
        engines, notes = build_engines(model, photo, threads, Path(workdir), int8=not args.skip_int8)
        progress(f"timing {', '.join(engines)}: {args.rounds} rounds, alternating")
        seconds, counts = alternate(engines, photo, args.rounds)
    tiles = len(tile_grid((photo.shape[1], photo.shape[0]), (args.network, args.network), DEFAULT_OVERLAP))
    print(
        f"\n### YOLOv3 {args.network}, 6 classes (random weights), {args.size[0]}x{args.size[1]} photo "
        f"tiled ({tiles} tiles + the whole photo), {threads} threads, {cpu_model()} (class `{cpu_class()}`, "
        f"bf16 instructions: {'yes' if cpu_has_bf16() else 'no'}), median of {args.rounds} alternating rounds\n"
    )
    print(result_table(seconds, counts))
    for note in notes:
        print(f"- {note}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_engines", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="photos per engine, in alternating order")
    parser.add_argument("--photo", type=Path, default=ROOT / "data" / "dog.jpg", help="scaled to --size")
    parser.add_argument("--size", type=_size, default=(3400, 2600), help="WIDTHxHEIGHT (default 3400x2600)")
    parser.add_argument("--network", type=int, default=832, help="the cfg's width and height (default 832)")
    parser.add_argument("--skip-int8", action="store_true", help="no int8 (quantizing takes minutes)")
    return parser.parse_args(argv)


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def build_engines(
    model: ModelDescription, photo: np.ndarray, threads: int, workdir: Path, int8: bool
) -> tuple[dict[str, Detector], list[str]]:
    """Every engine and precision this CPU runs, built directly: the gates are calibrate's."""
    from app.inference.engines.onnxruntime_engine import OnnxRuntimeEngine

    export = export_paths(model).fp32
    makers: dict[str, Callable] = {REFERENCE: lambda: OnnxRuntimeEngine(model, export, threads, "cpu")}
    notes = []
    try:
        from app.inference.engines.openvino_engine import OpenVinoEngine

        for precision in ("fp32", "bf16"):
            makers[f"openvino {precision}"] = lambda p=precision: OpenVinoEngine(model, export, threads, p)
    except ImportError as exc:
        notes.append(f"openvino: not timed, the {exc.name} package is not installed")
    if int8:
        blobs = calibration_blobs(model, photo)
        makers["onnxruntime int8 (u8s8-reduced)"] = lambda: OnnxRuntimeEngine(
            model, onnxruntime_int8(export, blobs, workdir), threads, "cpu", "int8"
        )
        if "openvino fp32" in makers:
            makers["openvino int8 (NNCF)"] = lambda: OpenVinoEngine(
                model, nncf_int8(model, blobs, workdir), threads, "int8"
            )
    engines = {}
    for name, make in makers.items():
        progress(f"loading {name}")
        try:
            engines[name] = Detector(make(), model)
        except (EngineUnavailable, ImportError) as exc:
            notes.append(f"{name}: not timed: {exc}")
    return engines, notes


def calibration_blobs(model: ModelDescription, photo: np.ndarray) -> list[np.ndarray]:
    from app.vision.preprocess import fit_to_network

    tiles = tile_grid((photo.shape[1], photo.shape[0]), (model.network.width, model.network.height), DEFAULT_OVERLAP)
    step = max(1, len(tiles) // CALIBRATION_TILES)
    crops = [photo[t.y : t.y + t.height, t.x : t.x + t.width] for t in tiles[::step][:CALIBRATION_TILES]]
    return [fit_to_network(crop, model.network)[0] for crop in [photo, *crops]]


def onnxruntime_int8(export: Path, blobs: list[np.ndarray], workdir: Path) -> Path:
    """The scheme the issue measured end to end: static QDQ, 7-bit int8 weights."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from app.inference.int8.calibration import output_layers
    from app.inference.int8.schemes import SCHEMES, quantize
    from app.inference.onnx_export import INPUT_NAME

    progress("quantizing with onnxruntime (u8s8-reduced)")
    prepared, target = workdir / "prepared.onnx", workdir / "u8s8-reduced.onnx"
    quant_pre_process(str(export), str(prepared), skip_symbolic_shape=True)
    remaining = iter(blobs)

    class Reader:
        def get_next(self):
            blob = next(remaining, None)
            return None if blob is None else {INPUT_NAME: blob}

    scheme = next(scheme for scheme in SCHEMES if scheme.name == "u8s8-reduced")
    quantize(prepared, target, Reader(), scheme, "minmax", output_layers(onnx.load(str(export))))
    return target


def nncf_int8(model: ModelDescription, blobs: list[np.ndarray], workdir: Path) -> Path:
    import onnx

    from app.inference.int8.calibration import output_layers
    from app.inference.int8.openvino_calibration import quantize_with_nncf

    progress("quantizing with NNCF")
    export = export_paths(model).fp32
    keep = output_layers(onnx.load(str(export)))
    return quantize_with_nncf(model, export, blobs, keep, workdir / "openvino-int8.xml")


def alternate(
    engines: dict[str, Detector], photo: np.ndarray, rounds: int
) -> tuple[dict[str, list[float]], dict[str, dict[str, int]]]:
    """Seconds per photo of each engine, one photo each in turn; the order reverses every
    round (A B C, C B A) so no engine always follows the same one."""
    names = list(engines)
    for name in names:  # first calls allocate buffers: one warm-up tile each
        engines[name].engine.predict(photo[:832, :832], 0.25)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    counts = {}
    for number in range(rounds):
        for name in names if number % 2 == 0 else reversed(names):
            started = time.perf_counter()
            found = engines[name].detect(photo)
            seconds[name].append(time.perf_counter() - started)
            counts[name] = count_by_class(found, engines[name].class_names)
            progress(f"  round {number + 1}: {name} {seconds[name][-1]:.1f} s")
    return seconds, counts


def result_table(seconds: dict[str, list[float]], counts: dict[str, dict[str, int]]) -> str:
    reference = seconds[REFERENCE]
    rows = []
    for name, samples in seconds.items():
        ratios = [value / base for value, base in zip(samples, reference, strict=True)]
        same = "yes" if counts[name] == counts[REFERENCE] else _difference(counts[name], counts[REFERENCE])
        rows.append((name, f"{np.median(samples):.1f}", f"{np.median(ratios):.2f}", same))
    return table(("engine and precision", "s per photo", "x onnxruntime fp32", "same counts"), rows)


def _difference(found: dict[str, int], reference: dict[str, int]) -> str:
    return ", ".join(f"{name} {reference[name]}->{found[name]}" for name in reference if found[name] != reference[name])


if __name__ == "__main__":
    sys.exit(main())
