"""`python -m app evaluate DATA`: how right the counts are on the lab's labelled photos.

  python -m app evaluate DATA [--threshold 0.25] [--tiling auto|on|off[,...]]
      [--compare-int8] [--missing-labels skip|empty] [--json PATH] [--plots DIR]

DATA is a darknet `.data` file (its `valid=` list) or a folder of photos with YOLO
`.txt` labels. The photos go through the service's own detector (engine, preprocessing,
tiling, merge; MODEL_DIR, BACKEND, ... from the environment) at a very low threshold,
as darknet's `detector map` does; several tiling modes, or fp32 beside the calibrated
int8, are evaluated side by side. Exit status 0 when something was evaluated, 2 when
nothing could be.
"""

from __future__ import annotations

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
        dataset = read_dataset(args.data, class_names, args.missing_labels)
    except (*STARTUP_ERRORS, DatasetError) as exc:
        print(f"cannot evaluate: {exc}", file=sys.stderr)
        return 2
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    for problem in dataset.problems:
        print(f"warning: {problem}", file=sys.stderr)
    results = {}
    for precision, detector in detectors.items():
        for mode in modes:
            name = f"{precision}, tiling {mode}"
            print(f"evaluating {len(dataset.photos)} photos: {name}", file=sys.stderr)
            results[name] = _evaluate(detector, dataset, mode, args.threshold, settings.max_image_pixels)
    print(render_tables(results, len(dataset.problems)))
    if args.json:
        args.json.write_text(json.dumps(to_json(results, args), indent=2) + "\n")
    if args.plots:
        from app.evaluation.plots import write_plots

        for name, evaluation in results.items():
            for path in write_plots(evaluation, args.plots, name):
                print(f"plot: {path}", file=sys.stderr)
    return 0


def _detector(settings, precision: str):
    from dataclasses import replace

    from app.inference.detector import build_detector

    return build_detector(replace(settings, precision=precision))


def _evaluate(detector, dataset, mode: str, threshold: float, max_pixels: int):
    from app.evaluation.metrics import LabelledBox, PhotoComparison, evaluate
    from app.pipeline import process_photo
    from app.vision.detection import DetectOptions
    from app.vision.images import ImageTooLarge, InvalidImage

    options = DetectOptions(threshold=CANDIDATE_THRESHOLD, tiling=mode)
    photos = []
    for photo in dataset.photos:
        try:
            result = process_photo(photo.path.read_bytes(), detector, options, max_pixels=max_pixels)
        except (OSError, InvalidImage, ImageTooLarge) as exc:
            print(f"warning: {photo.path}: {exc}; skipped", file=sys.stderr)
            continue
        size = (result.width, result.height)
        labels = [LabelledBox(label.class_id, label.in_pixels(size)) for label in photo.labels]
        photos.append(PhotoComparison(str(photo.path), labels, list(result.detections)))
    return evaluate(photos, detector.class_names, threshold)


def render_tables(results: dict, problem_count: int) -> str:
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
                f"{class_name[:15]:<16}{m.labelled:>9}{m.tp:>6}{m.fp:>6}{m.fn:>6}{m.precision:>7.3f}"
                f"{m.recall:>7.3f}{m.ap50:>7.3f}{m.count_mae:>10.2f}{m.count_bias:>+7.2f}"
                f"{m.best_count_threshold:>9.2f}{m.count_mae_at_best:>10.2f}"
            )
        labelled = sum(1 for m in evaluation.classes.values() if m.labelled)
        lines.append(
            f"mAP@0.5 over the {labelled} labelled classes: {evaluation.map50:.4f}; as darknet's detector map "
            f"averages it, over all {len(evaluation.classes)} classes in .names (unlabelled ones count 0): "
            f"{evaluation.map50_darknet:.4f}"
        )
        worst = [f"{Path(photo).name} ({error} off)" for photo, error in evaluation.worst_photos[:3] if error]
        lines.append("worst photos by count error: " + (", ".join(worst) or "none: every count right"))
    lines.append(
        "count MAE: mean absolute error of the count per photo; bias: mean of predicted minus labelled "
        "(+ over-counts); best thr: the threshold with the smallest count MAE (0.05-0.95)"
    )
    return "\n".join(lines)


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
                "map50": evaluation.map50,
                "map50_darknet": evaluation.map50_darknet,
                "worst_photos": evaluation.worst_photos[:10],
            }
        )
    return {"data": str(args.data), **{k: v for k, v in variants[0].items() if k != "name"}, "variants": variants}
