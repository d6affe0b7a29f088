"""The buffering front: nginx before gunicorn, as gunicorn's deployment guide and
SageMaker's bring-your-own-container example put it.

gunicorn's threads block on a request until it has arrived whole: eight connections
that sent one byte, or fifty that trickle a photo in, held every thread and /ping
with them. nginx reads each request whole (headers within 10 s, no pause of more
than 20 s in a body, bodies past a buffer to its private temp files), then hands it
to gunicorn over a unix socket in a private directory; it also takes the answer whole,
so a slow reader holds no thread either. Errors nginx answers itself (a body too
large, the service stopping) keep the service's JSON shape.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10  # the whole request head
BODY_PAUSE_S = 20  # longest silence inside a body (nginx times reads, not the whole body)
SEND_PAUSE_S = 30
KEEPALIVE_S = 5
START_CHECK_S = 0.5  # nginx that fails (a port in use) fails within this


class FrontError(RuntimeError):
    """nginx could not be started."""


@dataclass(frozen=True)
class FrontSettings:
    port: int
    directory: Path  # private (0700): the socket, nginx's config, pid and temp files
    max_body_mb: float
    upstream_timeout_s: float  # above the request deadline: the service answers first
    cors_any_origin: bool

    @property
    def socket(self) -> Path:
        return self.directory / "gunicorn.sock"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
    )


def _json_error(status: int, code: str, message: str, settings: FrontSettings, *extra: str) -> str:
    body = json.dumps({"error": {"code": code, "message": message}}).replace("'", "\\'")
    cors = "add_header Access-Control-Allow-Origin * always;" if settings.cors_any_origin else ""
    lines = [
        "default_type application/json;",
        "add_header X-Request-ID $request_id_out always;",
        cors,
        *extra,
        f"return {status} '{body}';",
    ]
    return " ".join(line for line in lines if line)


def render_config(settings: FrontSettings) -> str:
    directory = settings.directory
    # Only root may name the user nginx's workers run as: the service's own, so they can
    # reach the socket in its private directory (elsewhere they already are that user).
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.geteuid() == 0 else ""
    too_large = _json_error(
        413,
        "payload_too_large",
        f"the request body is larger than MAX_UPLOAD_MB ({settings.max_body_mb:g} MB)",
        settings,
    )
    unavailable = _json_error(
        503,
        "unavailable",
        "the service is starting or stopping; retry in a moment",
        settings,
        "add_header Retry-After 5 always;",
    )
    timeout = _json_error(
        503,
        "timeout",
        f"the service did not answer within {settings.upstream_timeout_s:g} s; retry later",
        settings,
        "add_header Retry-After 5 always;",
    )
    bad_request = _json_error(400, "bad_request", "the request is malformed or its head too large", settings)
    # nginx refuses TRACE itself, before any route is known: the methods the API uses.
    not_allowed = _json_error(
        405,
        "method_not_allowed",
        "the method is not allowed here",
        settings,
        "add_header Allow 'GET, HEAD, POST, OPTIONS' always;",
    )
    return f"""# Written at start by app/http/front.py; not edited by hand.
{user}
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log stderr error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    client_header_timeout {HEADER_TIMEOUT_S}s;
    client_body_timeout {BODY_PAUSE_S}s;
    send_timeout {SEND_PAUSE_S}s;
    keepalive_timeout {KEEPALIVE_S}s;
    client_max_body_size {int(settings.max_body_mb * 1024 * 1024)};
    client_body_buffer_size 8m;
    map $http_x_request_id $request_id_out {{ "" $request_id; default $http_x_request_id; }}
    # A fresh connection per request (cheap on a unix socket): gunicorn closes one whose
    # body it refused unread, and a kept-alive one could be reused at that moment.
    upstream service {{ server unix:{settings.socket}; }}
    server {{
        listen {settings.port} backlog=4096;
        location / {{
            proxy_pass http://service;
            proxy_http_version 1.1;
            proxy_set_header Connection close;
            proxy_set_header Host $http_host;
            proxy_set_header X-Request-ID $request_id_out;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_request_buffering on;
            proxy_buffering on;
            proxy_buffers 64 64k;
            proxy_connect_timeout 10s;
            # gunicorn reads a queued photo's body only at its turn: as long as an answer.
            proxy_send_timeout {int(settings.upstream_timeout_s)}s;
            proxy_read_timeout {int(settings.upstream_timeout_s)}s;
            proxy_next_upstream off;
        }}
        error_page 400 414 494 = @bad_request;
        error_page 405 = @not_allowed;
        error_page 413 = @payload_too_large;
        error_page 502 = @unavailable;
        error_page 504 = @timeout;
        location @bad_request {{ {bad_request} }}
        location @not_allowed {{ {not_allowed} }}
        location @payload_too_large {{ {too_large} }}
        location @unavailable {{ {unavailable} }}
        location @timeout {{ {timeout} }}
    }}
}}
"""


def _check_port(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx binds it
        try:  # every interface: the service listens on all of them
            probe.bind(("0.0.0.0", port))  # noqa: S104  # nosec B104
        except OSError as exc:
            raise FrontError(f"port {port} is not free ({exc.strerror})") from None


def _version(binary: str) -> tuple[int, ...]:
    """nginx -v says `nginx version: nginx/1.22.1` on stderr."""
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", result.stderr + result.stdout)
    return tuple(int(part) for part in match.groups()) if match else (0,)


class NginxFront:
    """nginx as a child of gunicorn's master, stopped with it; if nginx dies, the
    service stops too (a front that is gone leaves nothing to reach)."""

    def __init__(self, settings: FrontSettings, binary: str):
        self.settings = settings
        self.binary = binary
        self._process: subprocess.Popen | None = None
        self._stopping = threading.Event()

    def start(self, on_death: Callable[[str], None]) -> None:
        """on_death(message): nginx ended without being asked by stop()."""
        _check_port(self.settings.port)  # nginx itself retries a taken port for 2.5 s, then dies
        config = self.settings.directory / "nginx.conf"
        config.write_text(render_config(self.settings))
        command = [self.binary, "-p", str(self.settings.directory), "-c", str(config)]
        if _version(self.binary) >= (1, 19, 5):  # before the config is read, errors go to stderr too
            command[1:1] = ["-e", "stderr"]
        # nginx's own lines go through the service's log, in its one-line format.
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._relay, args=(self._process.stderr,), name="nginx-log", daemon=True).start()
        try:
            code = self._process.wait(START_CHECK_S)
        except subprocess.TimeoutExpired:
            threading.Thread(target=self._watch, args=(on_death,), name="nginx-watch", daemon=True).start()
            log.info("nginx (pid %d) listens on port %d", self._process.pid, self.settings.port)
            return
        raise FrontError(f"nginx exited with {code} at start (port {self.settings.port} in use?)")

    @staticmethod
    def _relay(stream) -> None:
        for line in stream:
            log.error("nginx: %s", line.rstrip())

    def _watch(self, on_death: Callable[[str], None]) -> None:
        # gunicorn's master may reap nginx itself (it waits on any child); wait() then
        # returns at once (as 0) either way: nginx is gone.
        self._process.wait()
        if not self._stopping.is_set():
            on_death(f"nginx (pid {self._process.pid}) exited; stopping the service")

    def stop(self) -> None:
        self._stopping.set()
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGQUIT)  # graceful: answers in flight go out
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
