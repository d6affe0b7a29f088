#!/usr/bin/env bash
# Makes a virtual environment with Label Studio, from its lock (locks/requirements-label-
# studio.txt: exact versions and hashes, sentry-sdk 2 among them, which 1.23.2 needs), for
# the end-to-end test of the ML backend and for a lab that labels on this machine. Outside
# the project's .venv: Label Studio pins Django, requests and many more that must not meet
# the service's own packages. Prints the venv's python on the last line.
#   LABEL_STUDIO_VENV  where (default: ~/.cache/darknet-service/label-studio-<lock digest>)
set -euo pipefail
cd "$(dirname "$0")/.."
lock=locks/requirements-label-studio.txt
digest=$(sha256sum "$lock" | cut -c1-12)
venv=${LABEL_STUDIO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/darknet-service/label-studio-$digest}
stamp="$venv/.label-studio-$digest"
if [ ! -f "$stamp" ]; then
  echo "installing Label Studio from $lock into $venv (about 700 MB, a few minutes the first time)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
