"""The buffering front: nginx before gunicorn, as gunicorn's deployment guide and
SageMaker's bring-your-own-container example put it.

gunicorn's threads block on a request until it has arrived whole: eight connections
that sent one byte, or fifty that trickle a photo in, held every thread and /ping
with them. nginx reads each request whole (headers within 10 s, no pause of more
than 20 s in a body, bodies past a buffer to its private temp files), then hands it
to gunicorn over a unix socket in a private directory; it also takes the answer whole,
so a slow reader holds no thread either. Errors nginx answers itself (a body too
large, the service stopping) keep the service's JSON shape. This module writes its
config; app/http/supervisor.py runs it beside gunicorn.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10  # the whole request head
BODY_PAUSE_S = 20  # longest silence inside a body (nginx times reads, not the whole body)
SEND_PAUSE_S = 30
KEEPALIVE_S = 5


class FrontError(RuntimeError):
    """The front cannot start: its port is taken, or nginx exited at once."""


@dataclass(frozen=True)
class FrontSettings:
    port: int
    host: str  # an IP address (app/settings.py): 0.0.0.0 every interface
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
        listen {listen_address(settings.host, settings.port)} backlog=4096;
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


def listen_address(host: str, port: int) -> str:
    """host:port as nginx and gunicorn write it ([::1]:8080 for an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_port(host: str, port: int) -> None:
    """The port is free, or one clear line: nginx itself retries a taken port for 2.5 s,
    then dies; gunicorn for 5 s."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx and gunicorn bind it
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise FrontError(f"port {port} is not free ({exc.strerror})") from None


def _version(binary: str) -> tuple[int, ...]:
    """nginx -v says `nginx version: nginx/1.22.1` on stderr."""
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", result.stderr + result.stdout)
    return tuple(int(part) for part in match.groups()) if match else (0,)


def nginx_command(settings: FrontSettings, binary: str) -> list[str]:
    """Writes nginx's config into the front's directory; the command that runs it in
    the foreground. The supervisor (app/http/supervisor.py) starts, watches and stops it."""
    config = settings.directory / "nginx.conf"
    config.write_text(render_config(settings))
    command = [binary, "-p", str(settings.directory), "-c", str(config)]
    if _version(binary) >= (1, 19, 5):  # before the config is read, errors go to stderr too
        command[1:1] = ["-e", "stderr"]
    return command
