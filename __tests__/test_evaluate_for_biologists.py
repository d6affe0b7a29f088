"""evaluate and count --plot read by a biologist: no number where there is none, the
counts per photo, one threshold for all classes, what the columns mean, and plots of a
culture over days that say which photo is which and keep the legend off the data."""

from __future__ import annotations

import argparse
from datetime import datetime

import pytest
from support import photo_path, run_count

from app.cli.count_plot import class_colours, draw_plot, folder_groups
from app.cli.evaluate import FOOTER, photo_counts, render_tables, to_json
from app.evaluation.metrics import LabelledBox, PhotoComparison, evaluate
from app.evaluation.plots import MAX_NAMED_POINTS, named_points
from app.pipeline import PhotoResult
from app.vision.detection import Detection

NAMES = ("Rotifer", "Dead", "Ciliate")


def found(class_id: int, x: float, confidence: float) -> Detection:
    return Detection(class_id, NAMES[class_id], confidence, (x, 0.0, 10.0, 10.0))


def label(class_id: int, x: float) -> LabelledBox:
    return LabelledBox(class_id, (x, 0.0, 10.0, 10.0))


@pytest.fixture
def lab_day():
    """Rotifers labelled and found; Dead labelled once and never found at all; no Ciliate
    labelled, one found at 0.3 (a false one)."""
    photos = [
        PhotoComparison(
            "day1/a.jpg", [label(0, 0), label(0, 50), label(1, 100)], [found(0, 0, 0.9), found(0, 50, 0.4)]
        ),
        PhotoComparison("day1/b.jpg", [label(0, 0)], [found(0, 0, 0.8), found(2, 70, 0.3), found(0, 200, 0.2)]),
    ]
    return evaluate(photos, NAMES, 0.25)


def test_a_number_with_no_sensible_value_is_a_dash_and_null_never_zero(lab_day):
    rotifer, dead, ciliate = (lab_day.classes[name] for name in NAMES)
    assert (rotifer.precision, rotifer.recall, rotifer.ap50) == (1.0, 1.0, 1.0)
    assert dead.precision is None  # never predicted: no share of right boxes
    assert (dead.recall, dead.ap50) == (0.0, 0.0)  # labelled and never found: that is a value
    assert ciliate.recall is None and ciliate.ap50 is None  # nobody labelled one
    assert ciliate.precision == 0.0  # one box drawn, wrong
    table = render_tables({"fp32, tiling auto": lab_day}, 0)
    (ciliate_row,) = [line for line in table.splitlines() if line.startswith("Ciliate")]
    assert ciliate_row.split()[1:8] == ["0", "0", "1", "0", "0.000", "-", "-"]
    (dead_row,) = [line for line in table.splitlines() if line.startswith("Dead")]
    assert dead_row.split()[5] == "-"
    report = to_json({"fp32, tiling auto": lab_day}, argparse.Namespace(data="lab"))
    assert report["classes"]["Ciliate"]["recall"] is None and report["classes"]["Ciliate"]["ap50"] is None


def test_darknets_map_over_every_class_is_printed_only_when_asked(lab_day):
    assert "darknet" not in render_tables({"v": lab_day}, 0)
    assert "over the 2 labelled classes: 0.5000" in render_tables({"v": lab_day}, 0)
    with_darknet = render_tables({"v": lab_day}, 0, darknet_map=True)
    assert "over all 3 classes in .names (unlabelled ones count 0): 0.3333" in with_darknet


def test_the_json_has_labelled_and_predicted_counts_per_photo_and_class(lab_day):
    assert photo_counts(lab_day) == [
        {
            "photo": "day1/a.jpg",
            "labelled": {"Rotifer": 2, "Dead": 1, "Ciliate": 0},
            "predicted": {"Rotifer": 2, "Dead": 0, "Ciliate": 0},
        },
        {
            "photo": "day1/b.jpg",
            "labelled": {"Rotifer": 1, "Dead": 0, "Ciliate": 0},
            "predicted": {"Rotifer": 1, "Dead": 0, "Ciliate": 1},
        },
    ]
    assert to_json({"v": lab_day}, argparse.Namespace(data="lab"))["photos"] == photo_counts(lab_day)


def test_one_threshold_for_all_classes_stands_beside_the_per_class_ones(lab_day):
    overall = lab_day.overall
    # Only the labelled classes decide (Rotifer, Dead): at 0.25 a.jpg misses its Dead (1 off), b.jpg is
    # right; no threshold finds the Dead, and from 0.2 to 0.4 the Rotifers are right: 0.25 stays.
    assert overall.classes == ("Rotifer", "Dead")
    assert overall.count_mae == 0.5 and overall.best_count_threshold == 0.25 and overall.count_mae_at_best == 0.5
    table = render_tables({"v": lab_day}, 0)
    assert (
        "one threshold for all classes: 0.25, where a photo's count is off by 0.50 "
        "(the counts of Rotifer, Dead together;" in table
    )
    # The Ciliate nobody labelled: its box is a false positive, said so, and decides nothing.
    assert (
        "found but never labelled here, so every box is a false positive and none decides the one threshold: Ciliate"
        in table
    )
    report = to_json({"v": lab_day}, argparse.Namespace(data="lab"))["overall"]
    assert report["count_mae_at_best"] == 0.5 and report["classes"] == ["Rotifer", "Dead"] and "sweep" not in report


def test_classes_named_decide_the_one_threshold_even_one_nobody_labelled(lab_day):
    photos = [
        PhotoComparison(
            "day1/a.jpg", [label(0, 0), label(0, 50), label(1, 100)], [found(0, 0, 0.9), found(0, 50, 0.4)]
        ),
        PhotoComparison("day1/b.jpg", [label(0, 0)], [found(0, 0, 0.8), found(2, 70, 0.3), found(0, 200, 0.2)]),
    ]
    overall = evaluate(photos, NAMES, 0.25, deciding=[0, 1, 2]).overall  # --classes Rotifer,Dead,Ciliate
    # At 0.25 b.jpg also has the false Ciliate (1 off); above 0.3 it goes and the Rotifers stay.
    assert overall.count_mae == 1.0
    assert 0.3 <= overall.best_count_threshold < 0.4 and overall.count_mae_at_best == 0.5
    assert evaluate(photos, NAMES, 0.25, deciding=[0]).overall.count_mae_at_best == 0.0  # Rotifers alone: right


def test_the_threshold_plot_draws_the_one_threshold_for_all_classes(lab_day, tmp_path, monkeypatch):
    from app.evaluation import plots

    figures = {}
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.setdefault(path.name, figure) and path)
    plots.write_plots(lab_day, tmp_path, "fp32, tiling auto")
    (axes,) = figures["fp32-tiling-auto-threshold.png"].axes
    lines = {line.get_label(): line for line in axes.get_lines()}
    best = lab_day.overall.best_count_threshold
    assert list(lines[f"one threshold for all classes {best:.2f}"].get_xdata()) == [best, best]
    together = lines["Rotifer, Dead together"]
    assert list(together.get_ydata()) == [error for _, error in lab_day.overall.sweep]
    import matplotlib.pyplot as plt

    plt.close("all")


def test_a_footer_says_what_each_column_means_in_a_line_each(lab_day):
    table = render_tables({"v": lab_day}, 0).splitlines()
    for term in ("TP", "FP", "FN", "prec", "recall", "AP50"):
        (line,) = [line for line in FOOTER if line.startswith(f"{term} ") or line.startswith(f"{term}:")]
        assert line in table


def test_the_counts_plot_names_its_points():
    counts = [(3, 3), (5, 2)]
    assert named_points(["a", "b"], counts) == [("a", 3, 3), ("b", 2, 5)]
    many = [f"p{i}" for i in range(MAX_NAMED_POINTS + 1)]
    off = [(1, 1)] * MAX_NAMED_POINTS + [(4, 1)]
    assert named_points(many, off) == [(many[-1], 1, 4)]  # on a big set, the photos off the diagonal


def result(filename: str, rotifers: int, taken: datetime | None = None, **more) -> PhotoResult:
    return PhotoResult(filename, 10, 10, (), {"Rotifer": rotifers, **more}, taken=taken)


def test_count_plot_groups_photos_by_folder_in_the_order_of_their_days():
    photos = [result("culture/day10/a.jpg", 1), result("culture/day2/a.jpg", 2), result("culture/day2/b.jpg", 4)]
    groups = folder_groups(photos)
    assert [(name, [p.counts["Rotifer"] for p in members]) for name, members in groups] == [
        ("day2", [2, 4]),
        ("day10", [1]),
    ]
    dated = [result("x/late/a.jpg", 1, datetime(2026, 11, 22)), result("x/early/a.jpg", 1, datetime(2026, 11, 20))]
    assert [name for name, _ in folder_groups(dated)] == ["early", "late"]  # the dates order them
    assert folder_groups([result("day1/a.jpg", 1), result("day1/b.jpg", 1)]) is None  # one folder: by photo


def test_count_plot_colours_are_distinct_up_to_20_classes_and_the_legend_is_beside_the_data():
    for count in (3, 12, 20):
        assert len(set(class_colours(count))) == count
    classes = {f"class{i}": 1 for i in range(20)}
    photos = [
        result("day1/a.jpg", 2, **classes),
        result("day1/b.jpg", 4, **classes),
        result("day2/a.jpg", 3, **classes),
    ]
    figure = draw_plot(photos, ["Rotifer", *classes])
    (axes,) = figure.axes
    figure.canvas.draw()
    plot_box, legend_box = axes.get_window_extent(), axes.get_legend().get_window_extent()
    assert legend_box.x0 >= plot_box.x1  # beside the data, not on it
    assert legend_box.x1 <= figure.bbox.x1 + 1  # and inside the picture
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["day1\n(2)", "day2\n(1)"]
    means = [line for line in axes.get_lines() if line.get_label() == "Rotifer"] or axes.containers
    assert means  # the mean and its spread are drawn per folder


@pytest.mark.e2e
def test_count_plot_of_a_culture_over_days_is_written(model_dir, tmp_path):
    for day, names in (("day1", ("dog.jpg", "kite.jpg")), ("day2", ("horses.jpg", "person.jpg"))):
        (tmp_path / "culture" / day).mkdir(parents=True)
        for name in names:
            (tmp_path / "culture" / day / name).write_bytes(photo_path(name).read_bytes())
    plot = tmp_path / "counts.png"
    run_count(str(tmp_path / "culture"), "--plot", str(plot), "--tiling", "off", model_dir=model_dir)
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
