"""`count --plot FILE`: the counts per class of a run as one PNG, the way a lab follows a
culture over days: x is the date each photo was taken, a line per class that was found.
Where the dates cannot order the photos (a photo without one, or all taken at the same
moment, as files just copied), x is the photos in the order counted, named below."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from app.pipeline import PhotoResult

MAX_NAMED_PHOTOS = 40  # more names than this under the axis are unreadable: numbers instead


def write_plot(results: Sequence[PhotoResult], class_names: Sequence[str], target: BinaryIO | Path) -> None:
    """results: the photos counted (failures left out), in the order counted."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    found = [name for name in class_names if any(result.counts.get(name) for result in results)]
    figure, axes = plt.subplots(figsize=(9, 5))
    if by_date(results):
        ordered = sorted(results, key=lambda result: result.taken)
        x: list = [result.taken for result in ordered]
        axes.set(xlabel="date taken", title=f"Counts per class over time ({len(ordered)} photos)")
        figure.autofmt_xdate()
    else:
        ordered = list(results)
        x = list(range(1, len(ordered) + 1))
        axes.set(xlabel="photo", title=f"Counts per class per photo ({len(ordered)} photos)")
        if len(ordered) <= MAX_NAMED_PHOTOS:
            names = [Path(result.filename or "").name or str(i) for i, result in zip(x, ordered, strict=True)]
            if len(set(names)) < len(names):  # day1/sample.jpg and day2/sample.jpg: their paths tell them apart
                names = [result.filename or str(i) for i, result in zip(x, ordered, strict=True)]
            axes.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
        else:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    for name in found:
        axes.plot(x, [result.counts.get(name, 0) for result in ordered], marker="o", markersize=4, label=name)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(ylabel="count per photo")
    axes.set_ylim(bottom=0)
    if found:
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "nothing found", transform=axes.transAxes, ha="center", va="center")
    figure.tight_layout()
    figure.savefig(target, format="png", dpi=100)
    plt.close(figure)


def by_date(results: Sequence[PhotoResult]) -> bool:
    """Whether the dates order the photos: every photo has one, and not all the same."""
    return all(result.taken for result in results) and len({result.taken for result in results}) > 1
