"""gunicorn's own refusals in the service's JSON shape. A request line or head that
gunicorn cannot parse or will not take (a control byte in a header, a URL or a head
past its limits, an unknown Transfer-Encoding) never reaches the app: gunicorn writes
the answer itself, as HTML, through gunicorn.util.write_error. gunicorn.conf.py puts
write_json_error in its place, in the master, before the workers fork. No Flask here."""

from __future__ import annotations

import json

CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "header_too_large",
    500: "internal_error",
    501: "not_implemented",
}
MAX_MESSAGE_CHARS = 200  # gunicorn's message quotes what the client sent


def json_error_answer(status: int, reason: str, message: str) -> bytes:
    code = CODES.get(status, "bad_request" if status < 500 else "internal_error")
    text = message[:MAX_MESSAGE_CHARS] or reason
    body = json.dumps({"error": {"code": code, "message": text}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def install() -> None:
    from gunicorn import util

    def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
        util.write_nonblock(sock, json_error_answer(status_int, reason, mesg))

    util.write_error = write_json_error
