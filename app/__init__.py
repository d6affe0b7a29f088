"""A darknet YOLO detection service: photos in, annotated photos and counts out.

gunicorn serves `app:create_app()`; tests build apps with their own Settings.
"""

from __future__ import annotations

import logging

from flask import Flask

from . import errors, http_hooks, routes
from .detector import build_detector
from .settings import Settings

LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    app = Flask(__name__)
    # Werkzeug refuses a larger body from its Content-Length, before reading it.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False  # keep "img", "stat" and the classes in .names order
    app.extensions["settings"] = settings
    app.extensions["detector"] = build_detector(settings)
    errors.init_app(app)
    http_hooks.init_app(app, settings.cors_origins)
    app.register_blueprint(routes.bp)
    return app
