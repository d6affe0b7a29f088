#!/usr/bin/env bash
# Start the detection service on 0.0.0.0:${PORT:-8080}.
# Prepares .venv from requirements.txt, fetches the demo model when no model is
# configured, then hands over to gunicorn (settings in gunicorn.conf.py).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"  # also when started through a symlink (`serve`)

case "${1:-}" in
  "" | serve) ;;  # `serve` is what SageMaker passes to the container
  *) echo "usage: $0 [serve]" >&2; exit 2 ;;
esac

source scripts/ensure_venv.sh
ensure_venv requirements.txt

if [ -z "${MODEL_DIR:-}" ] && ! compgen -G "aimodel/*.weights" >/dev/null && [ ! -d /opt/ml/model ]; then
  "$VENV/bin/python" scripts/fetch_demo_model.py aimodel
fi

echo "running gunicorn..."
exec "$VENV/bin/gunicorn" --config gunicorn.conf.py
