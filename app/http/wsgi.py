"""gunicorn's entry point: the app built from the environment, or one line on why not."""

from __future__ import annotations

from flask import Flask
from gunicorn.errors import AppImportError

from app.inference.engines import EngineUnavailable
from app.model.files import ModelError
from app.settings import ConfigError

from . import create_app


def application() -> Flask:
    try:
        return create_app()
    except (ConfigError, ModelError, EngineUnavailable) as exc:
        # gunicorn prints this message alone and stops: no traceback, no restart loop.
        raise AppImportError(f"cannot start: {exc}") from None
