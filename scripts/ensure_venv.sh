# shellcheck shell=bash
# Sourced by run.sh and test.sh: `ensure_venv REQUIREMENTS_FILE` makes $VENV (default
# .venv) and installs the file into it, again only when the file has changed.

ensure_venv() {
  local requirements=$1
  VENV=${VENV:-.venv}
  if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        # Debian and Ubuntu ship venv apart from python3.
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
      else
        echo "cannot create $VENV: install python3-venv (sudo apt-get install python3-venv)" >&2
        return 1
      fi
    fi
  fi
  local stamp="$VENV/.${requirements##*/}.sha256"
  local wanted
  # The files it reads with -r count too (requirements-calibrate.txt is not in every image).
  local read=("$requirements" requirements.txt)
  if [ -f requirements-calibrate.txt ]; then read+=(requirements-calibrate.txt); fi
  wanted=$(cat "${read[@]}" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$wanted" > "$stamp"
  fi
}
