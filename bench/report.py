"""Markdown output: tables and target lines, ready to paste into docs/performance.md."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """First column left-aligned, the numbers right-aligned."""
    lines = [_row(header), _row(["---"] + ["---:"] * (len(header) - 1))]
    lines += [_row(row) for row in rows]
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def target(name: str, value: float | None, limit: float, at_least: bool = False) -> str:
    """One target as a list item: the figure, the target and PASS/MISS; n/a when a
    figure it needs could not be measured on this machine."""
    sign = ">=" if at_least else "<="
    if value is None:
        return f"- {name}: n/a (target {sign} {limit})"
    passed = value >= limit if at_least else value <= limit
    return f"- {name}: {value:.2f} (target {sign} {limit}) {'PASS' if passed else 'MISS'}"


def ms(value: float) -> str:
    return f"{value:.1f}"


def times(value: float) -> str:
    return f"{value:.2f}"


def progress(message: str) -> None:
    """To stderr: stdout carries only the Markdown."""
    print(message, file=sys.stderr, flush=True)
