"""gunicorn settings for the detection service (https://docs.gunicorn.org/en/stable/settings.html).

Every value can be set from the environment; see docs/operations.md, Configuration.
"""

import atexit
import logging
import math
import os
import shutil
import signal
import sys
import tempfile

from gunicorn.glogging import Logger

wsgi_app = "app.http.wsgi:application()"

# Prometheus: every worker writes its metrics to files here, /metrics adds them up.
# Set before anything imports prometheus_client (app/ does): it reads this at import.
_own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _own_metrics_dir:
    _metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="detector-metrics-")
    _master_pid = os.getpid()

    # Whatever way the master ends (a refused start exits from on_starting, a port in use
    # from the arbiter), the directory goes with it; workers, forked from here, run atexit
    # handlers too and must leave it alone.
    @atexit.register
    def _remove_metrics_dir():
        if os.getpid() == _master_pid:
            shutil.rmtree(_metrics_dir, ignore_errors=True)


# Every setting read once, with the service's own checks: a bad value is one line.
from app.settings import STARTUP_ERRORS, Settings  # noqa: E402 - after the metrics directory

try:
    settings = Settings.from_env()
except STARTUP_ERRORS as exc:
    print(f"cannot start: {exc}", file=sys.stderr, flush=True)
    sys.exit(1)

# One model per worker process; each worker's engine gets cores / workers threads.
workers = settings.workers
worker_class = "gthread"
# A thread per photo in the worker's queue, plus spares so /ping never waits
# (app/http/admission.py): the queue's depth sets the threads, not the other way round.
threads = settings.threads
timeout = settings.timeout_s
keepalive = 5
# Staggered, so that workers do not restart together.
max_requests = settings.max_requests
max_requests_jitter = max_requests // 10
# gunicorn 24+ opens a control socket in a shared per-user path: two services on one
# machine would fight over it, and nothing here uses it.
control_socket_disable = True

# The app writes one structured line per request (app/http/request_log.py).
accesslog = None
errorlog = "-"
loglevel = settings.log_level.lower()


class ServiceLogger(Logger):
    """gunicorn's own messages, the app's and every other library's Python logging
    (and warnings) go through one handler in one format, one line per record, so every
    line of the stream has the shape of the app's request lines. Workers inherit it (the
    app's logging.basicConfig then finds the root logger configured and leaves it)."""

    def setup(self, cfg):
        super().setup(cfg)
        handler = self._get_gunicorn_handler(self.error_log)  # errorlog's: stderr or its file
        if handler is None:
            return
        from app.log_lines import formatter

        handler.setFormatter(formatter(settings.log_format))
        root = logging.getLogger()
        for earlier in [h for h in root.handlers if getattr(h, "_gunicorn", False)]:  # a reload's
            root.removeHandler(earlier)
        root.addHandler(handler)
        root.setLevel(self.loglevel)
        logging.captureWarnings(True)  # Pillow's and numpy's warnings: records, not bare stderr text


logger_class = ServiceLogger

# app/serve/supervisor.py starts gunicorn beside the nginx front and passes --bind (a
# unix socket in a private directory), which wins over this; started alone, or with
# FRONT=none, gunicorn serves HOST:PORT itself.
from app.serve.front import BEHIND_FRONT_ENV, listen_address  # noqa: E402 - after the settings

bind = listen_address(settings.host, settings.port)

# What gunicorn refuses before the app sees it is JSON too (app/http/gunicorn_errors.py).
from app.http.gunicorn_errors import install as _json_errors  # noqa: E402

_json_errors()
# Behind the nginx front (the supervisor says so) nginx's limits on a request's head are
# the service's, each answered as JSON (app/serve/front_pages.py); gunicorn's smaller ones
# answered what nginx let through (a URL of 4-8 KB, a hundred headers: nginx adds three).
# gunicorn alone keeps its own.
if os.environ.get(BEHIND_FRONT_ENV) == "1":
    limit_request_line = 8190  # nginx: a request line within one 8 KB buffer (gunicorn's most)
    limit_request_fields = 8192  # nginx: 32 KB of head; a header takes 4 bytes at least
# SIGTERM: the workers finish the photos they hold, each answered within its deadline.
graceful_timeout = math.ceil(settings.drain_s)


def on_starting(server):
    """Check the settings and model files once, in the master, before any worker
    forks: one clear line instead of one per worker. What only a worker can find out
    (a missing engine library) stops the start the same way, from app/http/wsgi.py."""
    from app.inference.engines import prepare_engine
    from app.model.files import ModelError, load_model_description

    try:
        # MODEL_SHA256 checked; the export of the pinned files made (or checked) here, once,
        # and its sha256 inherited by the workers that fork from this process.
        model = load_model_description(settings.model_dir, settings.pins)
        prepare_engine(settings.backend, model, settings.precision, settings.int8_min_agreement)
    except ModelError as exc:
        print(f"cannot start: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for stale in os.listdir(metrics_dir):  # counts of an earlier run are not this run's
        if stale.endswith(".db"):
            os.remove(os.path.join(metrics_dir, stale))
    server.log.info(
        "model %s, %d classes; %d workers x %d threads", model.files.cfg, len(model.class_names), workers, threads
    )


def post_worker_init(worker):
    """SIGTERM: the worker refuses new photos (503, Retry-After) while its queue drains."""
    queue = worker.wsgi.extensions.get("photo_queue") if hasattr(worker.wsgi, "extensions") else None
    if queue is None:
        return
    finish = signal.getsignal(signal.SIGTERM)

    def stop_taking_photos(signum, frame):
        queue.stopping = True
        finish(signum, frame)

    signal.signal(signal.SIGTERM, stop_taking_photos)


def post_request(worker, req, environ, resp):
    """A refused photo cost nothing: it does not count toward max_requests, or clients
    that ignore Retry-After would recycle the worker every few seconds."""
    if environ.get("detector.refused"):
        worker.nr -= 1


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
