# shellcheck shell=bash
# Sourced by run.sh, test.sh and the Dockerfile: `ensure_venv LOCK` makes $VENV (default
# .venv) and installs a lock from locks/ into it (exact versions, every file's hash
# checked: scripts/refresh_locks.sh writes them), again only when the lock has changed. What it cannot do (a folder the user cannot write) it says in one line, and
# it never deletes a .venv it merely may not use. `apt_install PACKAGE...` as root.

# On a fresh VM unattended-upgrades holds apt's locks for minutes: wait for them, at most
# APT_LOCK_WAIT_S seconds (300) in all, rather than fail at once.
apt_install() {
  local deadline=$((SECONDS + ${APT_LOCK_WAIT_S:-300})) out
  # `apt-get update` has no lock timeout of its own (DPkg::Lock::Timeout is install's).
  until out=$(apt-get update -qq 2>&1); do
    if [[ $out != *"lock"* ]] || ((SECONDS >= deadline)); then
      echo "$out" >&2
      return 1
    fi
    sleep 2
  done
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=$((deadline > SECONDS ? deadline - SECONDS : 0)) \
    install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_venv() {
  local lock=$1
  VENV=${VENV:-.venv}
  local user dir why
  user=$(id -un)
  dir=$(cd "$(dirname "$VENV")" && pwd)
  if [ -e "$VENV" ] && ! why=$("$VENV/bin/python" -c '' 2>&1); then
    # Only a venv whose interpreter is gone (a Python upgrade removes the one it links
    # to) is rebuilt, and said so; anything else (permissions, a broken install) is
    # said and the venv kept: it may be shared, or in use.
    if [ ! -L "$VENV/bin/python" ] || [ -e "$VENV/bin/python" ]; then
      echo "cannot use $VENV in $dir: its interpreter cannot be run by $user (${why%%$'\n'*}); owned by $(stat -c '%U, mode %a' "$VENV"): chown -R $user $dir/$VENV, run as its owner, or remove it to rebuild it" >&2
      return 1
    fi
    echo "rebuilding $VENV in $dir: its interpreter cannot be run (it links to $(readlink "$VENV/bin/python"), which is gone)" >&2
    rm -rf "$VENV"
  fi
  if [ ! -e "$VENV" ]; then
    if [ ! -w "$dir" ]; then
      echo "cannot create $VENV in $dir: not writable by $user (chown -R $user $dir, or run as its owner)" >&2
      return 1
    fi
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"  # the half-made one, just created
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        # Debian and Ubuntu ship venv apart from python3.
        apt_install python3-venv
        python3 -m venv "$VENV"
      else
        echo "cannot create $VENV: install python3-venv (sudo apt-get install python3-venv)" >&2
        return 1
      fi
    fi
  fi
  local stamp="$VENV/.${lock##*/}.sha256"
  local wanted
  wanted=$(sha256sum "$lock" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    if [ ! -w "$VENV" ]; then
      echo "cannot install $lock into $VENV in $dir: not writable by $user (chown -R $user $dir/$VENV, or run as its owner)" >&2
      return 1
    fi
    # Said before the wait: on a new machine this is the long step of a first start.
    echo "installing $lock into $VENV ($(grep -o '^[A-Za-z0-9][A-Za-z0-9._-]*==' "$lock" | sort -u | wc -l) packages, a few hundred MB on a first install)" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
    echo "$wanted" > "$stamp"
  fi
}
