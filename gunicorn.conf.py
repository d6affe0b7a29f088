"""gunicorn settings for the detection service (https://docs.gunicorn.org/en/stable/settings.html).

Every value can be set from the environment; see README, Configuration.
"""

import os
import sys

wsgi_app = "app.wsgi:application()"
bind = f"0.0.0.0:{os.environ.get('PORT') or '8080'}"

# One model per worker process; the engine uses the cores, so a worker per core at
# most. Threads let /ping answer while a worker's engine is busy with a photo.
workers = int(os.environ.get("WORKERS") or 1)
worker_class = "gthread"
threads = int(os.environ.get("THREADS") or 4)
# Above the slowest inference (a 48 MP photo on a slow CPU), so a busy worker is not killed.
timeout = int(os.environ.get("TIMEOUT") or 120)
graceful_timeout = 30  # finish in-flight photos on SIGTERM
keepalive = 5
# gunicorn 24+ opens a control socket in a shared per-user path: two services on one
# machine would fight over it, and nothing here uses it.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
loglevel = (os.environ.get("LOG_LEVEL") or "info").lower()
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'


def on_starting(server):
    """Check the settings and model files once, in the master, before any worker
    forks: one clear line instead of one per worker. What only a worker can find out
    (a missing engine library) stops the start the same way, from app/wsgi.py."""
    from app.model_files import ModelError, load_model_description
    from app.settings import ConfigError, Settings

    try:
        settings = Settings.from_env()
        model = load_model_description(settings.model_dir)
    except (ConfigError, ModelError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    server.log.info("model %s, %d classes", model.files.cfg, len(model.class_names))
