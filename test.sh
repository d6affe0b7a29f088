#!/usr/bin/env bash
# Run the whole test suite: installs what the tests need into .venv, fetches the demo
# model, lints, then runs pytest. Extra arguments go to pytest (./test.sh -k api).
set -euo pipefail
cd "$(dirname "$0")"

source scripts/ensure_venv.sh
ensure_venv requirements-test.txt
"$VENV/bin/python" scripts/fetch_demo_model.py aimodel

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
# pytest exits non-zero on any failure, and with 5 when no test ran: both fail here.
exec "$VENV/bin/python" -m pytest "$@"
