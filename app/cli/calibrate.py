"""`python -m app calibrate [--photos DIR]`: see app/inference/int8/calibration.py.

  python -m app calibrate [--photos DIR | PHOTO_DIR] [--holdout 0.3] [--pass-mark 0.98]
      [--method minmax|percentile|entropy] [--keep-fp32 conv_0,conv_3]
      [--schemes u8s8,u8s8-reduced,u8u8] [--no-accuracy-control]

--photos DIR (or PHOTO_DIR, as before): a folder of the lab's own photos, the more the
better. Without it, a set made on the fly from the sample photos in data/ (mirrored,
scaled, in mosaics: synthetic/calibration_photos.py) in a temporary folder, enough
boxes for the gate with the demo model. A verdict that rests on fewer than 100 held-out
boxes is refused (agreement.py: MIN_GATE_BOXES). The model is the service's (MODEL_DIR). Every scheme is measured
on this machine and the fastest that passes is kept; int8 then serves only on CPUs of
this instruction-set class. OpenVINO's f32, bf16 and int8 (NNCF, from
requirements-calibrate.txt) are measured beside them: PRECISION=auto serves the fastest
of all that passed. Exit status 0 when the report passes, 1 when it does not
(the report is written either way), 2 on errors.

Accuracy control: where int8 loses boxes on the calibration photos, the layers that
move the counts go back in fp32 until it agrees (onnxruntime: ranked by the quantization
error at their inputs, app/inference/int8/accuracy_control.py; OpenVINO: NNCF's
quantize_with_accuracy_control), and the report names them; the held-out photos judge
the result.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

SAMPLE_PHOTOS = Path(__file__).resolve().parents[2] / "data"


def add_command(commands) -> None:
    from app.inference.int8 import DEFAULT_INT8_MIN_AGREEMENT
    from app.inference.int8.schemes import SCHEME_NAMES

    calibrate = commands.add_parser("calibrate", help="quantize the model to int8 and check it against fp32")
    calibrate.add_argument("photo_dir", nargs="?", type=Path, default=None, metavar="PHOTO_DIR", help="as --photos")
    calibrate.add_argument(
        "--photos",
        type=Path,
        default=None,
        metavar="DIR",
        help="the lab's own photos (default: a set made from data/'s samples, in a temporary folder)",
    )
    calibrate.add_argument("--holdout", type=float, default=0.3, help="share of photos kept out to check on")
    calibrate.add_argument(
        "--pass-mark",
        type=float,
        default=None,  # INT8_MIN_AGREEMENT, read with the other settings (a bad one is one line)
        help=f"share of fp32 boxes int8 must match (default INT8_MIN_AGREEMENT or {DEFAULT_INT8_MIN_AGREEMENT})",
    )
    calibrate.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    calibrate.add_argument("--keep-fp32", default="", metavar="LAYERS", help="more layers to keep in fp32: conv_0,...")
    calibrate.add_argument(
        "--no-accuracy-control",
        action="store_true",
        help="measure int8 as quantized, without putting the layers that move the counts back in fp32",
    )
    calibrate.add_argument(
        "--schemes",
        default=",".join(SCHEME_NAMES),
        metavar="NAMES",
        help=f"quantization schemes to measure, the fastest that passes is kept (default {','.join(SCHEME_NAMES)})",
    )
    calibrate.set_defaults(run=run)


def run(args, parser) -> int:
    if not 0 < args.holdout < 1:
        parser.error("--holdout must be between 0 and 1")
    if args.pass_mark is not None and not 0 <= args.pass_mark <= 1:  # also refuses nan
        parser.error("--pass-mark must be between 0 and 1")
    if args.photos is not None and args.photo_dir is not None and args.photos != args.photo_dir:
        parser.error("give the photos once: --photos DIR or PHOTO_DIR")
    photos = args.photos if args.photos is not None else args.photo_dir
    if photos is not None:
        return _calibrate(args, parser, photos, str(photos))
    try:
        from synthetic.calibration_photos import write_calibration_photos
    except ImportError:  # an image without the checkout's synthetic/: the lab's photos are needed
        print("cannot calibrate: no --photos DIR given and no synthetic/ here to make a set", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="calibration-photos-") as directory:
        count = write_calibration_photos(Path(directory), SAMPLE_PHOTOS)
        print(f"no --photos: {count} photos made from {SAMPLE_PHOTOS} (mirrored, scaled, mosaics) in {directory}")
        return _calibrate(args, parser, Path(directory), "the sample photos of data/, mirrored, scaled, in mosaics")


def _calibrate(args, parser, photo_dir: Path, source: str) -> int:
    from app.inference.int8.calibration import CalibrationError, CalibrationOptions, calibrate
    from app.inference.int8.report import matched_share
    from app.inference.int8.schemes import SCHEMES
    from app.inference.onnx_export import UnsupportedLayer, WeightsError
    from app.model.files import ModelError, load_model_description
    from app.settings import ConfigError, Settings

    by_name = {scheme.name: scheme for scheme in SCHEMES}
    wanted = [name.strip() for name in args.schemes.split(",") if name.strip()]
    if not wanted or set(wanted) - set(by_name):
        parser.error(f"--schemes: choose from {', '.join(by_name)}")
    try:
        settings = Settings.for_one_process()
        model = load_model_description(settings.model_dir, settings.pins)
        options = CalibrationOptions(
            holdout=args.holdout,
            pass_mark=settings.int8_min_agreement if args.pass_mark is None else args.pass_mark,
            method=args.method,
            keep_fp32=tuple(name.strip() for name in args.keep_fp32.split(",") if name.strip()),
            threads=settings.engine_threads,
            max_pixels=settings.max_image_pixels,
            tile_overlap=settings.tile_overlap,
            schemes=tuple(by_name[name] for name in wanted),
            accuracy_control=not args.no_accuracy_control,
            photo_source=source,
        )
        report, paths, report_sha256 = calibrate(model, photo_dir, options)
    except (ConfigError, ModelError, CalibrationError, UnsupportedLayer, WeightsError) as exc:
        print(f"cannot calibrate: {exc}", file=sys.stderr)
        return 2
    print(f"this CPU: {report.cpu_class}; fp32 forward pass {report.fp32_forward_ms:.1f} ms")
    print(f"{'scheme':<20} {'held out':>9} {'calibration':>12} {'int8 ms':>8} {'x fp32':>7}")
    for result in report.schemes:
        print(
            f"{result['scheme']:<20} {result['matched_share']:>9.1%} {result['calibration_matched_share']:>12.1%} "
            f"{result['forward_ms']:>8.1f} {result['forward_ms'] / report.fp32_forward_ms:>7.2f}"
            f"  {'pass' if result['passed'] else 'FAIL'}"
        )
    print(f"chosen: {report.scheme}: {report.scheme_reason}")
    for label, restored in report.restored_fp32.items():
        layers = ", ".join(restored["layers"]) or "none"
        reached = "reached" if restored["reached"] else "not reached"
        stopped = f" (stopped: {restored['stopped']})" if restored.get("stopped") else ""
        print(
            f"accuracy control, {label}: back in fp32: {layers}; pass mark on the calibration photos {reached}{stopped}"
        )
    _print_candidates(report)
    print(f"calibrated on {len(report.calibration_photos)} photos; held out {len(report.held_out)}:")
    for photo in report.held_out:
        changed = "" if photo.same_counts else "  counts differ"
        print(f"  {photo.photo}: {photo.matched_boxes}/{photo.fp32_boxes} fp32 boxes matched{changed}")
        if changed:
            print(f"    fp32 {_nonzero(photo.fp32_counts)}\n    int8 {_nonzero(photo.int8_counts)}")
    check = report.calibration_check
    print(
        f"on the calibration photos themselves (not the gate): {matched_share(check):.1%} of "
        f"{sum(photo.fp32_boxes for photo in check)} fp32 boxes matched, "
        f"counts equal on {sum(photo.same_counts for photo in check)} of {len(check)}"
    )
    passed = report.passes(report.pass_mark)
    low, high = report.interval
    print(
        f"{report.matched_share:.1%} (95% interval {low:.1%}-{high:.1%}) of {report.fp32_boxes} fp32 boxes on "
        f"{len(report.held_out)} held-out photos matched at IoU >= 0.5 (pass mark {report.pass_mark:.1%}): "
        f"{'PASS' if passed else 'FAIL'}{f' (no verdict: {report.refusal})' if report.refusal else ''}"
    )
    print(f"int8 model: {paths.int8}\nreport:     {paths.int8_report}")
    # The one line an operator copies: under MODEL_SHA256 only a pinned report is read.
    print(f"CALIBRATION_SHA256={report_sha256}")
    if passed:
        print(f"serve it with PRECISION=int8 (on {report.cpu_class} CPUs; elsewhere calibrate there)")
    print(_tile_skipping(settings, photo_dir))
    return 0 if passed else 1


def _tile_skipping(settings, photos: Path) -> str:
    """Whether TILE_CONTRAST_FLOOR changed a count on these photos, with the engine and
    threshold that serve (app/evaluation/tile_skipping.py)."""
    from app.evaluation.tile_skipping import SkippingCheck, every_tile
    from app.inference.detector import build_detector
    from app.model.threshold import default_threshold
    from app.pipeline import PhotoLimits, process_photo
    from app.settings import STARTUP_ERRORS
    from app.vision.detection import DetectOptions
    from app.vision.images import ImageTooLarge, InvalidImage, decode_image, photos_in

    try:
        detector = build_detector(settings)
    except STARTUP_ERRORS as exc:
        return f"tile skipping: not measured, the service's detector cannot start: {exc}"
    weights = detector.model.files.weights
    threshold = default_threshold(weights, detector.file_hashes[weights.name], settings.default_threshold).value
    options, limits = DetectOptions(threshold=threshold), PhotoLimits(settings.max_image_pixels)
    check, all_tiles = SkippingCheck(detector.tile_contrast_floor, threshold), every_tile(detector)
    for path in photos_in([photos]):
        try:
            data = path.read_bytes()
            result = process_photo(data, detector, options, limits)
        except (OSError, InvalidImage, ImageTooLarge):
            continue  # calibration said what it could not read
        again = functools.partial(process_photo, data, all_tiles, options, limits)
        check.add(path.name, decode_image(data, settings.max_image_pixels), result, again)
    return check.summary()


def _print_candidates(report) -> None:
    """Every engine and precision against onnxruntime fp32, and what PRECISION=auto takes."""
    from app.inference.int8.agreement import too_few_boxes, wilson_interval
    from app.inference.int8.candidates import REFERENCE, passes, serving_plan
    from app.inference.int8.cpu_class import cpu_has_bf16

    print(
        f"\n{'engine and precision':<50} {'boxes':>6} {'photos':>6} {'held out':>9} {'95% interval':>13} "
        f"{'calibration':>12} {'ms':>8} {'x fp32':>7}"
    )
    for entry in report.candidates:
        label = f"{entry['engine']} {entry['precision']}" + (f" ({entry['detail']})" if entry["detail"] else "")
        low, high = wilson_interval(round(entry["matched_share"] * entry["fp32_boxes"]), entry["fp32_boxes"])
        reference = (entry["engine"], entry["precision"]) == REFERENCE
        refusal = None if reference else too_few_boxes(entry["fp32_boxes"])
        verdict = "reference" if reference else "pass" if passes(entry, report.pass_mark) else "FAIL"
        print(
            f"{label:<50} {entry['fp32_boxes']:>6} {entry['photos']:>6} {entry['matched_share']:>9.1%} "
            f"{f'{low:.1%}-{high:.1%}':>13} {entry['calibration_matched_share']:>12.1%}"
            f" {entry['forward_ms']:>8.1f} {entry['forward_ms'] / report.fp32_forward_ms:>7.2f}"
            f"  {verdict}{f': {refusal}' if refusal else ''}"
        )
    for note in report.settings.get("not_measured", []):
        print(f"  {note}")
    plan = serving_plan(report.candidates, report.cpu_class, report.cpu_class, "auto", report.pass_mark, cpu_has_bf16())
    print(f"PRECISION=auto (the default) serves {plan[0].backend} {plan[0].precision}: {plan[0].reason}\n")


def _nonzero(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items() if count) or "nothing"
