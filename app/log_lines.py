"""The service's log line: one format for gunicorn's records, the app's and every
library's, one record per line. No Flask here: gunicorn's master formats with it."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
MAX_RECORD_CHARS = 16_000  # per log record of any logger: a traceback fits, a pasted body does not


class OneLineFormatter(logging.Formatter):
    """One record, one line, of bounded length: a library's message or a traceback keeps
    its line breaks escaped, so every line of the stream is one whole record."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\r", "\\r").replace("\n", "\\n")
        if len(text) <= MAX_RECORD_CHARS:
            return text
        # Both ends: the start says who logged, a traceback's end says what was raised.
        half = MAX_RECORD_CHARS // 2
        return f"{text[:half]}…[{len(text) - 2 * half} chars]…{text[-half:]}"
