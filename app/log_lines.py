"""The service's log line: one format for gunicorn's records, the app's and every
library's, one record per line. No Flask here: gunicorn's master formats with it.

LOG_FORMAT=text (the default): `time [pid] [LEVEL] logger: message`, a request's
fields as JSON after `app.request: `. LOG_FORMAT=json: every line a JSON object
(time, level, logger, pid, then a request's fields or the message), for a log
collector that should not parse text.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")
MAX_RECORD_CHARS = 16_000  # per log record of any logger: a traceback fits, a pasted body does not


def formatter(log_format: str) -> logging.Formatter:
    return JsonLineFormatter() if log_format == "json" else OneLineFormatter(LOG_FORMAT)


class Fields(dict):
    """A record's message that is data (a request's fields): a JSON line carries them as
    they are, the text format writes them as compact JSON. Either serialises it once, and
    only when the record is written."""

    def __str__(self) -> str:
        return json.dumps(self, separators=(",", ":"), default=str)


class OneLineFormatter(logging.Formatter):
    """One record, one line, of bounded length: a library's message or a traceback keeps
    its line breaks escaped, so every line of the stream is one whole record."""

    def format(self, record: logging.LogRecord) -> str:
        return _bounded(super().format(record).replace("\r", "\\r").replace("\n", "\\n"))


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: JSON escapes line breaks itself."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
        }
        if isinstance(record.msg, Fields):
            line.update(record.msg)
        else:
            line["message"] = _bounded(record.getMessage())
        if record.exc_info:
            line["exception"] = _bounded(self.formatException(record.exc_info))
        return json.dumps(line, separators=(",", ":"), default=str)


def _bounded(text: str) -> str:
    if len(text) <= MAX_RECORD_CHARS:
        return text
    # Both ends: the start says who logged, a traceback's end says what was raised.
    half = MAX_RECORD_CHARS // 2
    return f"{text[:half]}…[{len(text) - 2 * half} chars]…{text[-half:]}"
