"""`evaluate --plots DIR`: three PNGs per evaluated variant, for the classes with labels:
predicted against labelled count per photo, the precision-recall curves, and the count
error against the threshold (where the service's threshold sits, the best one per class,
and the one threshold for all classes with the curve it is the lowest point of)."""

from __future__ import annotations

import re
from pathlib import Path

from .metrics import Evaluation

MAX_NAMED_POINTS = 30


def write_plots(evaluation: Evaluation, directory: Path, variant: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^a-z0-9]+", "-", variant.lower()).strip("-")
    labelled = {name: m for name, m in evaluation.classes.items() if m.labelled}
    written = []

    figure, axes = plt.subplots(figsize=(6, 6))
    top = max([1] + [max(p, t) for m in labelled.values() for p, t in m.counts])
    axes.plot([0, top], [0, top], color="grey", linewidth=1, label="right count")
    names = [Path(photo).stem for photo in evaluation.photo_names]
    for name, metrics in labelled.items():
        axes.scatter([t for _, t in metrics.counts], [p for p, _ in metrics.counts], label=name, alpha=0.7)
        for photo, truth, predicted in named_points(names, metrics.counts):
            axes.annotate(photo, (truth, predicted), xytext=(3, 3), textcoords="offset points", fontsize=6)
    axes.set(xlabel="labelled count per photo", ylabel="predicted count per photo", title=f"Counts: {variant}")
    axes.legend()
    written.append(_save(figure, directory / f"{stem}-counts.png"))

    figure, axes = plt.subplots(figsize=(6, 5))
    for name, metrics in labelled.items():
        recall, precision = metrics.pr_curve
        axes.plot(recall, precision, label=f"{name} (AP50 {metrics.ap50:.2f})")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"Precision-recall: {variant}")
    axes.legend()
    written.append(_save(figure, directory / f"{stem}-pr.png"))

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, metrics in labelled.items():
        axes.plot([t for t, _ in metrics.sweep], [e for _, e in metrics.sweep], label=name)
        axes.scatter([metrics.best_count_threshold], [metrics.count_mae_at_best], marker="o")
    axes.axvline(evaluation.threshold, color="grey", linestyle="--", label=f"threshold {evaluation.threshold:g}")
    overall = evaluation.overall
    if overall is not None:
        # The one threshold evaluate prints (and --save-threshold saves), and the curve it is the lowest point of.
        if len(overall.classes) > 1:
            names = ", ".join(overall.classes[:3]) + ("..." if len(overall.classes) > 3 else "")
            axes.plot(
                [t for t, _ in overall.sweep],
                [e for _, e in overall.sweep],
                color="black",
                linewidth=2,
                label=f"{names} together",
            )
        axes.axvline(
            overall.best_count_threshold,
            color="black",
            linestyle=":",
            linewidth=2,
            zorder=3,
            label=f"one threshold for all classes {overall.best_count_threshold:.2f}",
        )
    axes.set(xlabel="threshold", ylabel="count error per photo (MAE)", title=f"Count error by threshold: {variant}")
    axes.legend()
    written.append(_save(figure, directory / f"{stem}-threshold.png"))
    return written


def named_points(names: list[str], counts: list[tuple[int, int]]) -> list[tuple[str, int, int]]:
    """(photo, labelled, predicted) of the points the counts plot names: every one on a
    small set, else those off the diagonal (the photos worth a look)."""
    return [
        (name, truth, predicted)
        for name, (predicted, truth) in zip(names, counts, strict=True)
        if len(names) <= MAX_NAMED_POINTS or predicted != truth
    ]


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path
