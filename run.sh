#!/usr/bin/env bash
# Start the detection service on ${HOST:-0.0.0.0}:${PORT:-8080}.
# Prepares .venv from locks/requirements.txt, the model (app/model/sources.py: fetched from
# MODEL_S3_URI, or the demo model when none is configured), then hands over to the
# supervisor (app/serve/supervisor.py), which runs gunicorn (gunicorn.conf.py) and the
# nginx front side by side, and drains both on Ctrl-C, SIGTERM or `docker stop`.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"  # also when started through a symlink (`serve`)

case "${1:-}" in
  "" | serve) ;;  # `serve` is what SageMaker passes to the container
  *) echo "usage: $0 [serve]" >&2; exit 2 ;;
esac

# shellcheck source=scripts/ensure_venv.sh
source scripts/ensure_venv.sh  # and apt_install

# nginx in front reads whole requests before gunicorn's threads see them (app/serve/front.py);
# as root it is installed here, as python3-venv is; without it gunicorn serves alone (the
# supervisor warns), unless FRONT=nginx asks for it.
if [ "${FRONT:-auto}" != none ] && ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ] &&
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt_install nginx || echo "could not install nginx (apt failed, or another apt held its lock for ${APT_LOCK_WAIT_S:-300} s)" >&2
fi
ensure_venv locks/requirements.txt

# Where the model comes from is decided there (MODEL_S3_URI, MODEL_DIR, aimodel/,
# /opt/ml/model, else the demo), fetched, and printed; a failure stops here (set -e:
# an assignment, unlike `export`, keeps the command's exit status).
MODEL_DIR="$("$VENV/bin/python" -m app.model.sources)"
export MODEL_DIR

log_format=${LOG_FORMAT:-text}
[ "${log_format,,}" = json ] || echo "running gunicorn..."  # JSON lines only, when asked
exec "$VENV/bin/python" -m app.serve.supervisor
