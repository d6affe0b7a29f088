"""`python -m app count|calibrate|evaluate` (app/cli)."""

import sys

from app.cli import main

sys.exit(main())
