#!/usr/bin/env python3
"""Put the pretrained COCO yolov3-tiny into a model directory (default: aimodel/).

What ./test.sh runs for the tests' model; the fetching itself is app/model/demo.py,
which ./run.sh also uses (through app/model/sources.py) when no model is configured.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.model.demo import DEMO_URI, fetch_demo_model
from app.model.files import ModelError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("destination", nargs="?", default="aimodel", type=Path)
    destination = parser.parse_args().destination
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        fetch_demo_model(DEMO_URI, destination)
    except (ModelError, OSError) as exc:
        print(f"cannot fetch the demo model: {exc}", file=sys.stderr)
        return 1
    print(f"demo model ready in {destination}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
