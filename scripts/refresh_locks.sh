#!/usr/bin/env bash
# Writes locks/ from the ranges people edit (requirements*.txt), then runs ./test.sh fast
# and says what moved. run.sh, test.sh, the Dockerfile and the tool venvs install only
# from locks/ (pip --require-hashes), so a release on PyPI changes nothing until this runs.
#
#   scripts/refresh_locks.sh            after editing a range: every pin the ranges still
#                                       allow is kept, only what the edit needs moves
#   scripts/refresh_locks.sh --upgrade  once a month (and for a security advisory): every
#                                       package to its newest release within the ranges
#   --no-test                           write the locks only
#
# The locks are universal (every Python from 3.10, every platform), resolved by uv,
# itself installed from its own lock (locks/requirements-locking.txt) in a venv of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

upgrade=() test=1
for arg in "$@"; do
  case "$arg" in
    --upgrade) upgrade=(--upgrade) ;;
    --no-test) test=0 ;;
    *) sed -n '5,11p' "$0" >&2; exit 2 ;;
  esac
done

say() { echo "refresh_locks: $*" >&2; }

lock_tool=locks/requirements-locking.txt
venv=${XDG_CACHE_HOME:-$HOME/.cache}/darknet-service/uv-$(sha256sum "$lock_tool" | cut -c1-12)
if [ ! -x "$venv/bin/uv" ]; then
  say "installing uv from $lock_tool into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock_tool"
fi

before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
cp locks/*.txt "$before"/

# RANGES and CONSTRAINED_BY in scripts/locks.py: the order and what holds each.
ranges=$(python3 -c 'import sys; sys.path.insert(0, "scripts"); import locks; print(*locks.RANGES)')
for name in $ranges; do
  constraint=()
  held_by=$(python3 -c "import sys; sys.path.insert(0, 'scripts'); import locks; print(locks.CONSTRAINED_BY.get('$name', ''))")
  [ -z "$held_by" ] || constraint=(--constraint "locks/$held_by")
  say "locking $name"
  "$venv/bin/uv" pip compile --quiet --universal --python-version 3.10 --generate-hashes \
    --custom-compile-command scripts/refresh_locks.sh "${upgrade[@]}" "${constraint[@]}" \
    "$name" --output-file "locks/$name"
done

python3 scripts/locks.py moved "$before" locks
if [ "$test" = 1 ]; then
  say "running ./test.sh fast on the new locks"
  if ! ./test.sh fast; then
    say "the tests fail on the new locks: see above; 'git checkout locks/' goes back to the old ones"
    exit 1
  fi
fi
say "done: review 'git diff locks/' and commit it with the list above"
