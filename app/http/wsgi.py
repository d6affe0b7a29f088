"""gunicorn's entry point: the app built from the environment, or one line on why not."""

from __future__ import annotations

from flask import Flask
from gunicorn.errors import AppImportError

from app.settings import STARTUP_ERRORS

from .factory import create_app


def application() -> Flask:
    try:
        return create_app()
    except STARTUP_ERRORS as exc:
        # gunicorn prints this message alone and stops: no traceback, no restart loop.
        raise AppImportError(f"cannot start: {exc}") from None
