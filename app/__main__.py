"""Command line: `python -m app count PATH...` (app/batch_count.py),
`python -m app calibrate [PHOTO_DIR]` (app/int8/command.py) and
`python -m app evaluate DATA` (app/evaluation/command.py)."""

import argparse
import sys

from . import batch_count
from .evaluation import command as evaluate_command
from .int8 import command as calibrate_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="The detection service's tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    batch_count.add_command(commands)
    calibrate_command.add_command(commands)
    evaluate_command.add_command(commands)
    args = parser.parse_args(argv)
    return args.run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
