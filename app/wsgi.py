"""gunicorn's entry point: the app built from the environment, or one line on why not."""

from __future__ import annotations

from flask import Flask
from gunicorn.errors import AppImportError

from . import create_app
from .engines import EngineUnavailable
from .model_files import ModelError
from .settings import ConfigError


def application() -> Flask:
    try:
        return create_app()
    except (ConfigError, ModelError, EngineUnavailable) as exc:
        # gunicorn prints this message alone and stops: no traceback, no restart loop.
        raise AppImportError(f"cannot start: {exc}") from None
