"""Command line: `python -m app count PATH...` (count.py), `python -m app calibrate
[PHOTO_DIR]` (calibrate.py) and `python -m app evaluate DATA` (evaluate.py)."""

from __future__ import annotations

import argparse

from . import calibrate, count, evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="The detection service's tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    count.add_command(commands)
    calibrate.add_command(commands)
    evaluate.add_command(commands)
    args = parser.parse_args(argv)
    return args.run(args, parser)
