"""`count --plot FILE`: the counts per class of a run as one PNG, the way a lab follows a
culture over days. Photos in several folders (day1/, day2/: a sample photographed a few
times each day) are drawn a group per folder, the mean count of each class with its
spread (one standard deviation) and each photo a dot. Photos in one folder: x is the
date each photo was taken, a line per class that was found; where the dates cannot
order the photos (a photo without one, or all taken at the same moment, as files just
copied), x is the photos in the order counted, named below. Each class keeps a colour of
its own up to 20 classes, and the legend stands beside the plot, never on the data."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import BinaryIO

import numpy as np

from app.pipeline import PhotoResult

MAX_NAMED_PHOTOS = 40  # more names than this under the axis are unreadable: numbers instead


def write_plot(results: Sequence[PhotoResult], class_names: Sequence[str], target: BinaryIO | Path) -> None:
    """results: the photos counted (failures left out), in the order counted."""
    import matplotlib.pyplot as plt

    figure = draw_plot(results, class_names)
    figure.savefig(target, format="png", dpi=100)
    plt.close(figure)


def draw_plot(results: Sequence[PhotoResult], class_names: Sequence[str]):
    """The matplotlib figure of write_plot, 900x500 at 100 dpi."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    found = [name for name in class_names if any(result.counts.get(name) for result in results)]
    colours = class_colours(len(found))
    figure, axes = plt.subplots(figsize=(9, 5))
    groups = folder_groups(results)
    if groups:
        _draw_groups(axes, groups, found, colours)
    else:
        _draw_photos(figure, axes, results, found, colours)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(ylabel="count per photo")
    axes.set_ylim(bottom=0)
    if found:
        # Beside the data, never on it: the plot gives up the room the legend needs.
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        figure.tight_layout(rect=(0, 0, LEGEND_SHARE, 1))
    else:
        axes.text(0.5, 0.5, "nothing found", transform=axes.transAxes, ha="center", va="center")
        figure.tight_layout()
    return figure


LEGEND_SHARE = 0.8  # of the figure's width, for the plot; the rest holds the legend


def class_colours(count: int) -> list:
    """A distinct colour per class: tab10 up to 10, tab20 up to 20, then evenly around the hues."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](index) for index in range(count)]
    if count <= 20:
        # tab20 pairs a dark and a light shade of each hue: the dark ones first, then the light.
        return [colormaps["tab20"](index) for index in [*range(0, 20, 2), *range(1, 20, 2)][:count]]
    return [colormaps["hsv"](index / count) for index in range(count)]


def folder_groups(results: Sequence[PhotoResult]) -> list[tuple[str, list[PhotoResult]]] | None:
    """The photos by folder, when they come from more than one; ordered by the earliest
    date taken where every photo has one, else by the folders' names (day2 before day10)."""
    by_folder: dict[PurePath, list[PhotoResult]] = {}
    for result in results:
        by_folder.setdefault(PurePath(result.filename or "").parent, []).append(result)
    if len(by_folder) < 2:
        return None
    folders = list(by_folder)
    names = {folder: folder.name or str(folder) for folder in folders}
    if len(set(names.values())) < len(names):  # a/day1 and b/day1: their paths tell them apart
        names = {folder: str(folder) for folder in folders}
    if all(result.taken for result in results):
        folders.sort(key=lambda folder: min(result.taken for result in by_folder[folder]))
    else:
        folders.sort(key=lambda folder: _natural(str(folder)))
    return [(names[folder], by_folder[folder]) for folder in folders]


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", text)]


def _draw_groups(axes, groups, found: list[str], colours: list) -> None:
    positions = np.arange(len(groups))
    width = 0.7 / max(1, len(found))  # the classes of a folder side by side
    for index, (name, colour) in enumerate(zip(found, colours, strict=True)):
        x = positions - 0.35 + width * (index + 0.5)
        counts = [[result.counts.get(name, 0) for result in members] for _, members in groups]
        means = [float(np.mean(values)) for values in counts]
        spreads = [float(np.std(values)) for values in counts]
        axes.errorbar(x, means, yerr=spreads, fmt="o", color=colour, capsize=3, label=name)
        for at, values in zip(x, counts, strict=True):
            axes.scatter([at] * len(values), values, s=8, color=colour, alpha=0.35)
    axes.set_xticks(positions, [f"{name}\n({len(members)})" for name, members in groups], fontsize=8)
    photos = sum(len(members) for _, members in groups)
    axes.set(
        xlabel="folder (photos)",
        title=f"Counts per class by folder ({photos} photos): mean and one standard deviation",
    )


def _draw_photos(figure, axes, results, found: list[str], colours: list) -> None:
    from matplotlib.ticker import MaxNLocator

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
    for name, colour in zip(found, colours, strict=True):
        counts = [result.counts.get(name, 0) for result in ordered]
        axes.plot(x, counts, marker="o", markersize=4, color=colour, label=name)


def by_date(results: Sequence[PhotoResult]) -> bool:
    """Whether the dates order the photos: every photo has one, and not all the same."""
    return all(result.taken for result in results) and len({result.taken for result in results}) > 1
