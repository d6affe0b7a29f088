#!/usr/bin/env bash
# Makes a virtual environment with Label Studio for the end-to-end test of the ML
# backend, outside the project's .venv: Label Studio pins Django, requests and many more
# that must not meet the service's own packages. Prints the venv's python on the last line.
#   LABEL_STUDIO_VENV  where (default: ~/.cache/darknet-service/label-studio-<version>)
#   LABEL_STUDIO_VERSION  which release from PyPI (default below; the test is made for it)
set -euo pipefail
version=${LABEL_STUDIO_VERSION:-1.23.2}
venv=${LABEL_STUDIO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/darknet-service/label-studio-$version}
stamp="$venv/.label-studio-$version"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "label-studio==$version" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
