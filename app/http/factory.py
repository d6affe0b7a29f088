"""The Flask app factory: the detector, the guards in their order, the routes."""

from __future__ import annotations

import logging
import mimetypes

from flask import Flask

from app import __version__
from app.inference.detector import Detector, build_detector
from app.log_lines import formatter
from app.model.threshold import SavedThreshold
from app.settings import Settings

from . import admission, auth, cors, errors, hooks, label_studio, metrics, request_log, routes
from .admission import PhotoQueue
from .pixel_budget import PixelBudget

# The page's ES modules run only when served as JavaScript; a host's own table (Windows'
# registry) may say text/plain for .js.
mimetypes.add_type("text/javascript", ".js")


def create_app(settings: Settings | None = None, detector: Detector | None = None) -> Flask:
    """detector: one already built (tests give one on a fixed engine); else the settings' own."""
    settings = settings or Settings.from_env()
    if not logging.getLogger().handlers:  # under gunicorn its logger set the root up already
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(settings.log_format))
        logging.basicConfig(level=settings.log_level, handlers=[handler])
    app = Flask(__name__)
    # Werkzeug refuses a larger body from its Content-Length, before reading it.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False  # keep "img", "stat" and the classes in .names order
    app.extensions["settings"] = settings
    app.extensions["detector"] = detector = detector or build_detector(settings)
    app.extensions["pixel_budget"] = PixelBudget(settings.pixel_budget)
    weights = detector.model.files.weights
    # Followed while the service runs: evaluate --save-threshold takes effect without a restart.
    app.extensions["default_threshold"] = threshold = SavedThreshold(
        weights, detector.file_hashes[weights.name], settings.default_threshold
    )
    logging.getLogger(__name__).info("default threshold %g (%s)", threshold.value, threshold.current().source)
    metrics.MODEL_LOAD_SECONDS.set(detector.load_seconds)
    engine = detector.engine
    metrics.describe_build(detector.model_id, engine.name, engine.device, engine.precision, __version__)
    errors.init_app(app)
    # Hooks run in registration order: the request id exists before a 401 is raised.
    hooks.init_app(app)
    cors.init_app(app, settings.cors_origins)
    request_log.init_app(app)
    auth.init_app(app, settings.api_keys)
    # After auth: strangers take no place in the queue.
    queue = PhotoQueue(settings.active_photos, settings.queue_depth, observe=metrics.observe_queue)
    admission.init_app(app, queue, settings.request_deadline_s, keyed=bool(settings.api_keys))
    # After auth (no reading for strangers) and the queue (a queued photo's body waits unread).
    hooks.limit_streamed_bodies(app, settings.max_upload_bytes)
    app.register_blueprint(routes.bp)
    label_studio.init_app(app, settings)  # the Label Studio ML backend, under /label-studio
    return app
