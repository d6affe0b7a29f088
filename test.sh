#!/usr/bin/env bash
# Run the whole test suite: installs what the tests need into .venv, fetches the demo
# model, lints, then runs pytest: the unit and integration tiers on every core, then the
# e2e tier one test at a time (its tests time and weigh real services, which a neighbour
# on the same cores would disturb). Extra arguments make it one pytest run of its own
# (./test.sh -k api).
#   ./test.sh fast   the unit and integration tiers (no service, browser or container
#                    started; __tests__/conftest.py), on every core: about a minute
#   ./test.sh unit   only the tests that need no model file
set -euo pipefail
cd "$(dirname "$0")"

fast_tiers=(-m "not e2e" --numprocesses auto)
tier=()
case "${1:-}" in
  fast) shift; tier=("${fast_tiers[@]}") ;;
  unit) shift; tier=(-m unit) ;;
esac

# Debian packages the tests use where they can be installed (as root): darknet for a
# real libdarknet.so (pjreddie API), chromium for the web page in a real browser,
# nginx for the buffering front ./run.sh puts before gunicorn, podman and runc to build
# and run the images (where no docker daemon answers). Under CI=true a test whose tool
# is missing fails, naming the package (__tests__/support.py, require_tool).
missing=()
[ -f /usr/lib/darknet/libdarknet.so ] || missing+=(darknet)
command -v chromium >/dev/null || missing+=(chromium)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
[ -x /usr/bin/systemd-analyze ] || missing+=(systemd)  # checks the docs' systemd unit
if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
fi
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# shellcheck source=scripts/ensure_venv.sh
source scripts/ensure_venv.sh
ensure_venv locks/requirements-test.txt
"$VENV/bin/python" scripts/fetch_demo_model.py aimodel

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/hadolint" Dockerfile
"$VENV/bin/shellcheck" run.sh test.sh .ci/run scripts/*.sh darknet/*.sh
# Security lint of the shipped code: any medium or high finding fails (each accepted
# one is marked `# nosec` with its reason where it stands).
"$VENV/bin/bandit" --quiet --recursive --severity-level medium app darknet scripts gunicorn.conf.py
# pytest exits non-zero on any failure, and with 5 when no test ran: both fail here.
if [ ${#tier[@]} -eq 0 ] && [ $# -eq 0 ]; then
  "$VENV/bin/python" -m pytest "${fast_tiers[@]}"
  # What each minute of the e2e tier buys, in CI's output.
  exec "$VENV/bin/python" -m pytest -m e2e --durations=25
fi
exec "$VENV/bin/python" -m pytest "${tier[@]}" "$@"
