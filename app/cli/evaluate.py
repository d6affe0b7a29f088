"""`python -m app evaluate DATA`: how right the counts are on the lab's labelled photos.

  python -m app evaluate DATA [--threshold 0.25] [--tiling auto|on|off[,...]]
      [--compare-int8] [--missing-labels skip|empty] [--json PATH] [--plots DIR] [--darknet-map]
      [--classes a,b] [--save-threshold]

DATA is a darknet `.data` file (its `valid=` list) or a folder of photos with YOLO
`.txt` labels. The photos go through the service's own detector (engine, preprocessing,
tiling, merge; MODEL_DIR, BACKEND, ... from the environment) at a very low threshold,
as darknet's `detector map` does; several tiling modes, or fp32 beside the calibrated
int8, are evaluated side by side. Exit status 0 when something was evaluated, 2 when
nothing could be.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import asdict
from pathlib import Path

CANDIDATE_THRESHOLD = 0.005  # darknet's detector map keeps candidates from this score up


def add_command(commands) -> None:
    from app.vision.detection import DEFAULT_THRESHOLD

    evaluate = commands.add_parser("evaluate", help="counting and detection accuracy against labelled photos")
    evaluate.add_argument("data", type=Path, metavar="DATA", help="a darknet .data file, or a folder of photos")
    evaluate.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    evaluate.add_argument("--tiling", default="auto", help="auto, on, off, or several to compare: off,on")
    evaluate.add_argument("--compare-int8", action="store_true", help="the calibrated int8 model beside fp32")
    evaluate.add_argument("--missing-labels", choices=("skip", "empty"), default="skip")
    evaluate.add_argument("--json", type=Path, metavar="PATH", help="every number, as JSON")
    evaluate.add_argument("--plots", type=Path, metavar="DIR", help="counts, precision-recall and threshold plots")
    evaluate.add_argument(
        "--classes",
        metavar="A,B",
        help="the classes whose counts decide the one threshold for all classes (default: every class with a "
        "label in the set; a class nobody labels would count each of its boxes as an error)",
    )
    evaluate.add_argument(
        "--save-threshold",
        action="store_true",
        help="save the one count-optimal threshold for all classes next to the weights: the service, its page "
        "and count then use it where none is given",
    )
    evaluate.add_argument(
        "--darknet-map",
        action="store_true",
        help="also print mAP as darknet's detector map averages it, over every class in .names",
    )
    evaluate.set_defaults(run=run)


def run(args, parser) -> int:
    from app.vision.tiling import TILING_MODES

    modes = [mode.strip() for mode in args.tiling.split(",") if mode.strip()]
    if not modes or set(modes) - set(TILING_MODES):
        parser.error(f"--tiling: one or more of {', '.join(TILING_MODES)}, separated by commas")
    if not 0 <= args.threshold <= 1:
        parser.error("--threshold must be between 0 and 1")
    from app.evaluation.dataset import DatasetError, read_dataset
    from app.settings import STARTUP_ERRORS, Settings

    try:
        settings = Settings.for_one_process()
        precisions = ["fp32", "int8"] if args.compare_int8 else [settings.precision]
        detectors = {precision: _detector(settings, precision) for precision in precisions}
        class_names = next(iter(detectors.values())).class_names
        deciding = deciding_classes(args.classes, class_names)
        dataset = read_dataset(args.data, class_names, args.missing_labels)
    except (*STARTUP_ERRORS, DatasetError) as exc:
        print(f"cannot evaluate: {exc}", file=sys.stderr)
        return 2
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    for problem in dataset.problems:
        print(f"warning: {problem}", file=sys.stderr)
    results, skipping = {}, {}
    for detector in detectors.values():
        for mode in modes:
            # What serves, not what was asked: PRECISION=auto may choose openvino bf16.
            engine = detector.engine
            label = engine.precision if engine.name == "onnxruntime" else f"{engine.name} {engine.precision}"
            name = f"{label}, tiling {mode}"
            print(f"evaluating {len(dataset.photos)} photos: {name}", file=sys.stderr)
            evaluated = _evaluate(detector, dataset, mode, args.threshold, settings.max_image_pixels, deciding)
            results[name], skipping[name] = evaluated
    print(render_tables(results, len(dataset.problems), args.darknet_map, dataset.unknown_labels))
    for name, check in skipping.items():
        print(f"{name}: {check.summary()}")
    if args.json:
        report = to_json(results, args) | {"unknown_class_labels_left_out": dataset.unknown_labels}
        for variant in report["variants"]:
            variant["tile_skipping"] = skipping[variant["name"]].as_dict()
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.save_threshold:
        detector = next(iter(detectors.values()))
        saved = _save_threshold(detector, next(iter(results.items())), settings.default_threshold)
        if saved is None:
            return 1
    if args.plots:
        from app.evaluation.plots import write_plots

        for name, evaluation in results.items():
            for path in write_plots(evaluation, args.plots, name):
                print(f"plot: {path}", file=sys.stderr)
    return 0


def _save_threshold(detector, variant, setting: float | None) -> float | None:
    """The first variant's one threshold for all classes, saved next to the weights.
    setting: DEFAULT_THRESHOLD here, which wins over the file."""
    from app.model.threshold import save_threshold

    name, evaluation = variant
    if evaluation.overall is None:
        print("cannot save a threshold: no photo with a labelled class was evaluated", file=sys.stderr)
        return None
    best = evaluation.overall.best_count_threshold
    weights = detector.model.files.weights
    try:
        path = save_threshold(weights, detector.file_hashes[weights.name], best, f"evaluate, {name}")
    except OSError as exc:
        print(f"cannot save the threshold next to {weights}: {exc.strerror or exc}", file=sys.stderr)
        return None
    print(
        f"saved threshold {best:g} to {path}: count uses it where none is given, and a running service takes it "
        "within seconds, no restart (GET /model says so), for requests without a threshold and for its page "
        "where nobody moved the slider",
        file=sys.stderr,
    )
    if setting is not None:
        print(
            f"note: DEFAULT_THRESHOLD={setting:g} is set here and wins over the saved threshold; a service started "
            "with it set does the same",
            file=sys.stderr,
        )
    return best


def deciding_classes(written: str | None, class_names) -> list[int] | None:
    """--classes a,b as class ids; None: every labelled class decides."""
    from app.evaluation.dataset import DatasetError

    if written is None:
        return None
    folded = {name.casefold(): index for index, name in enumerate(class_names)}
    ids = []
    for name in (part.strip() for part in written.split(",")):
        if not name:
            continue
        if name.casefold() not in folded:
            raise DatasetError(f"--classes: {name!r} is not a class of the model")
        ids.append(folded[name.casefold()])
    if not ids:
        raise DatasetError("--classes: name one class of the model or more, separated by commas")
    return ids


def _detector(settings, precision: str):
    from dataclasses import replace

    from app.inference.detector import build_detector

    return build_detector(replace(settings, precision=precision))


def _evaluate(detector, dataset, mode: str, threshold: float, max_pixels: int, deciding: list[int] | None):
    """The evaluation, and whether skipping tiles changed a count at `threshold`."""
    from app.evaluation.metrics import LabelledBox, PhotoComparison, evaluate
    from app.evaluation.tile_skipping import SkippingCheck, every_tile
    from app.pipeline import PhotoLimits, process_photo
    from app.vision.detection import DetectOptions
    from app.vision.images import ImageTooLarge, InvalidImage, decode_image

    options = DetectOptions(threshold=CANDIDATE_THRESHOLD, tiling=mode)
    limits = PhotoLimits(max_pixels)
    check, all_tiles = SkippingCheck(detector.tile_contrast_floor, threshold), every_tile(detector)
    photos = []
    for photo in dataset.photos:
        try:
            data = photo.path.read_bytes()
            result = process_photo(data, detector, options, limits)
        except (OSError, InvalidImage, ImageTooLarge) as exc:
            print(f"warning: {photo.path}: {exc}; skipped", file=sys.stderr)
            continue
        size = (result.width, result.height)
        labels = [LabelledBox(label.class_id, label.in_pixels(size)) for label in photo.labels]
        photos.append(PhotoComparison(str(photo.path), labels, list(result.detections)))
        again = functools.partial(process_photo, data, all_tiles, options, limits)
        check.add(photo.path.name, decode_image(data, max_pixels), result, again)
    return evaluate(photos, detector.class_names, threshold, deciding), check


# What the columns mean, for a reader who is a biologist first: a line each.
FOOTER = (
    "TP (true positives): labelled objects the model found, its box overlapping the label by IoU >= 0.5",
    "FP (false positives): boxes the model drew where no labelled object of that class is",
    "FN (false negatives): labelled objects the model missed",
    "prec (precision): of the boxes drawn, the share that are right, TP / (TP + FP)",
    "recall: of the labelled objects, the share found, TP / (TP + FN)",
    "AP50: precision averaged over every recall, from the surest box to the least (1 is perfect)",
    "count MAE: how far off the count of a photo is, on average; bias: predicted minus labelled (+ over-counts)",
    "best thr: the threshold with the smallest count MAE (0.05-0.95); -: no value (nothing labelled or predicted)",
    "one threshold for all classes: the smallest count error of the labelled classes (or --classes) together",
)


def render_tables(
    results: dict, problem_count: int, darknet_map: bool = False, left_out: dict[str, int] | None = None
) -> str:
    """left_out: labels of classes the model does not have, by name (not in any number)."""
    lines = []
    for name, evaluation in results.items():
        lines.append(
            f"\n{name}, threshold {evaluation.threshold:g}: {evaluation.photos} photos"
            + (f" ({problem_count} problems, see warnings)" if problem_count else "")
        )
        header = (
            f"{'class':<16}{'labelled':>9}{'TP':>6}{'FP':>6}{'FN':>6}{'prec':>7}{'recall':>7}{'AP50':>7}"
            f"{'count MAE':>10}{'bias':>7}{'best thr':>9}{'MAE there':>10}"
        )
        lines.append(header)
        for class_name, m in evaluation.classes.items():
            if not (m.labelled or m.tp or m.fp):
                continue
            lines.append(
                f"{class_name[:15]:<16}{m.labelled:>9}{m.tp:>6}{m.fp:>6}{m.fn:>6}{_shown(m.precision, 7)}"
                f"{_shown(m.recall, 7)}{_shown(m.ap50, 7)}{m.count_mae:>10.2f}{m.count_bias:>+7.2f}"
                f"{m.best_count_threshold:>9.2f}{m.count_mae_at_best:>10.2f}"
            )
        labelled = sum(1 for m in evaluation.classes.values() if m.labelled)
        overall = evaluation.overall
        if overall:
            lines.append(
                f"one threshold for all classes: {overall.best_count_threshold:.2f}, where a photo's count is off by "
                f"{overall.count_mae_at_best:.2f} (the counts of {_names(overall.classes)}"
                f"{' together' if len(overall.classes) > 1 else ''}; "
                f"{overall.count_mae:.2f} at {evaluation.threshold:g})"
            )
        else:
            lines.append("one threshold for all classes: - (no labelled class to decide it)")
        deciding = set(overall.classes if overall else ())
        unlabelled = [
            name for name, m in evaluation.classes.items() if m.fp and not m.labelled and name not in deciding
        ]
        if unlabelled:
            lines.append(
                f"found but never labelled here, so every box is a false positive and none decides the one "
                f"threshold: {_names(unlabelled)}"
            )
        map50 = "-" if evaluation.map50 is None else f"{evaluation.map50:.4f}"
        lines.append(f"mAP@0.5 over the {labelled} labelled classes: {map50}")
        if darknet_map:
            lines.append(
                f"mAP@0.5 as darknet's detector map averages it, over all {len(evaluation.classes)} classes in "
                f".names (unlabelled ones count 0): {evaluation.map50_darknet:.4f}"
            )
        worst = [f"{Path(photo).name} ({error} off)" for photo, error in evaluation.worst_photos[:3] if error]
        lines.append("worst photos by count error: " + (", ".join(worst) or "none: every count right"))
    if left_out:
        shown = ", ".join(f"{name} ({count})" for name, count in left_out.items())
        lines.append(f"left out: labels of classes the model does not have, in no number above: {shown}")
    lines.append("")
    lines.extend(FOOTER)
    return "\n".join(lines)


def _names(names) -> str:
    """Names in a line: the first few, then how many more."""
    names = list(names)
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def _shown(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.3f}"


def to_json(results: dict, args) -> dict:
    variants = []
    for name, evaluation in results.items():
        classes = {}
        for class_name, metrics in evaluation.classes.items():
            numbers = asdict(metrics)
            numbers.pop("pr_curve")  # long and only for plots
            classes[class_name] = numbers
        variants.append(
            {
                "name": name,
                "threshold": evaluation.threshold,
                "classes": classes,
                "overall": _overall_json(evaluation.overall),
                "map50": evaluation.map50,
                "map50_darknet": evaluation.map50_darknet,
                "photos": photo_counts(evaluation),
                "worst_photos": evaluation.worst_photos[:10],
            }
        )
    return {"data": str(args.data), **{k: v for k, v in variants[0].items() if k != "name"}, "variants": variants}


def _overall_json(overall) -> dict | None:
    if overall is None:
        return None
    numbers = asdict(overall)
    numbers.pop("sweep")  # for plots
    numbers["classes"] = list(overall.classes)
    return numbers


def photo_counts(evaluation) -> list[dict]:
    """Per photo, labelled and predicted counts of every class labelled or predicted anywhere."""
    shown = [name for name, m in evaluation.classes.items() if any(p or t for p, t in m.counts)]
    return [
        {
            "photo": photo,
            "labelled": {name: evaluation.classes[name].counts[index][1] for name in shown},
            "predicted": {name: evaluation.classes[name].counts[index][0] for name in shown},
        }
        for index, photo in enumerate(evaluation.photo_names)
    ]
