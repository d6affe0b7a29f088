"""Command line: `python -m app count PATH...` (see app/batch_count.py)."""

import sys

from .batch_count import main

if __name__ == "__main__":
    sys.exit(main())
