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
# What one client (an address) and everyone may hold of the front (README, Limits). The
# connections a client holds once its request head is in: enough for a lab's batch
# uploads and its browser; one client took all 4096 with slow POSTs. Uploads are bodies
# being received or waiting for their answer: each at most MAX_UPLOAD_MB of temp file
# on disk and BODY_BUFFER of nginx's memory.
WORKER_CONNECTIONS = 4096
CONNECTIONS_PER_CLIENT = 256
UPLOADS_PER_CLIENT = 96  # above a worker's queue (64 + 2): a client's own queue fills first
UPLOADS_IN_ALL = 512
BODY_BUFFER = "256k"  # 8 MB buffers let 60-150 parked uploads take nginx to 1.1 GB
URL_LIMIT_KB = 8  # nginx's large_client_header_buffers: a request line past it is a 414
ERROR_PREFIX = "/.front-error/"
PLAIN_KEY = re.compile(r"[A-Za-z0-9._~+/=-]+")


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
    api_keys: tuple[str, ...] = ()  # checked from an upload's head, before its body

    @property
    def socket(self) -> Path:
        return self.directory / "g.sock"  # short: a unix socket path has 107 bytes, TMPDIR included


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
    errors = _error_locations(settings)
    return f"""# Written at start by app/http/front.py; not edited by hand.
{user}
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log stderr error;
events {{ worker_connections {WORKER_CONNECTIONS}; }}
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
    # A body past this goes to a temp file: parked uploads cost disk, not nginx's memory.
    client_body_buffer_size {BODY_BUFFER};
    map $http_x_request_id $request_id_out {{ "" $request_id; default $http_x_request_id; }}
    # What one client (an address) may hold, and all of them together (README, Limits).
    map $request_method $upload_client {{ POST $binary_remote_addr; PUT $binary_remote_addr; default ""; }}
    map $request_method $upload_any {{ POST upload; PUT upload; default ""; }}
    limit_conn_zone $binary_remote_addr zone=client:4m;
    limit_conn_zone $upload_client zone=client_uploads:4m;
    limit_conn_zone $upload_any zone=uploads:1m;
    limit_conn client {CONNECTIONS_PER_CLIENT};
    limit_conn client_uploads {UPLOADS_PER_CLIENT};
    limit_conn uploads {UPLOADS_IN_ALL};
    limit_conn_status 429;
    limit_conn_log_level warn;
{_key_maps(settings.api_keys)}
    # A fresh connection per request (cheap on a unix socket): gunicorn closes one whose
    # body it refused unread, and a kept-alive one could be reused at that moment.
    upstream service {{ server unix:{settings.socket}; }}
    server {{
        listen {listen_address(settings.host, settings.port)} backlog=4096;
        location / {{
            # No key, no body taken: refused from the head (the body is read and dropped).
            if ($refused_key) {{ return 401; }}
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
        # nginx's own refusals, in the service's JSON shape. To a URI, not a named location:
        # a request whose line could not be parsed (HTTP/2's preface, CONNECT host:port,
        # OPTIONS *) has no URI, and a redirect to a named location then fails as an HTML 500.
{errors}
    }}
}}
"""


def _error_locations(settings: FrontSettings) -> str:
    retry = "add_header Retry-After 5 always;"
    pages = {
        "400 494": ("bad_request", _bad_request(settings)),
        "401": ("unauthorized", _json_error(
            401, "unauthorized", "this service needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key'",
            settings, "add_header WWW-Authenticate 'Bearer realm=\"detector\"' always;",
        )),
        # nginx refuses TRACE itself, before any route is known: the methods the API uses.
        "405": ("method_not_allowed", _json_error(
            405, "method_not_allowed", "the method is not allowed here", settings,
            "add_header Allow 'GET, HEAD, POST, OPTIONS' always;",
        )),
        "413": ("payload_too_large", _json_error(
            413, "payload_too_large", f"the request body is larger than MAX_UPLOAD_MB ({settings.max_body_mb:g} MB)",
            settings,
        )),
        "414": ("uri_too_long", _json_error(
            414, "uri_too_long", f"the URL is longer than {URL_LIMIT_KB} KB; send parameters in the body", settings
        )),
        "429": ("too_many_requests", _json_error(
            429, "too_many_requests",
            f"this client has too many requests open (at most {CONNECTIONS_PER_CLIENT}, of which "
            f"{UPLOADS_PER_CLIENT} uploads), or the service too many uploads; retry when yours are answered",
            settings, "add_header Retry-After 1 always;",
        )),
        "502": ("unavailable", _json_error(
            503, "unavailable", "the service is starting or stopping; retry in a moment", settings, retry
        )),
        "504": ("timeout", _json_error(
            503, "timeout", f"the service did not answer within {settings.upstream_timeout_s:g} s; retry later",
            settings, retry,
        )),
    }  # fmt: skip
    lines = []
    for codes, (name, body) in pages.items():
        lines.append(f"        error_page {codes} = {ERROR_PREFIX}{name};")
        lines.append(f"        location = {ERROR_PREFIX}{name} {{ internal; {body} }}")
    return "\n".join(lines)


def _bad_request(settings: FrontSettings) -> str:
    """400, or what the request line says it was: HTTP/2 spoken to an HTTP/1 port (its
    preface is `PRI * HTTP/2.0`), a proxy's CONNECT."""
    allow = "add_header Allow 'GET, HEAD, POST, OPTIONS' always;"
    http2 = _json_error(
        400, "http2_not_supported", "this port speaks HTTP/1.1; send the request over HTTP/1.1", settings
    )
    connect = _json_error(405, "method_not_allowed", "CONNECT is not served: this is not a proxy", settings, allow)
    malformed = _json_error(
        400, "bad_request", "the request is malformed (its line, target or head), or its head too large", settings
    )
    # The request line as sent ($request_method is unset when it could not be parsed). In
    # an `if` block only add_header and return (what nginx calls safe there), and the
    # block's own add_header replaces the location's: each block says them all.
    return (
        f'if ($request ~ "^PRI \\* HTTP/2") {{ {_in_if(http2)} }} '
        f'if ($request ~ "^CONNECT ") {{ {_in_if(connect)} }} '
        f"{malformed}"
    )


def _in_if(rendered: str) -> str:
    """A _json_error without its default_type, which an `if` block may not hold (the
    location's holds for it)."""
    return rendered.replace("default_type application/json; ", "")


def _key_maps(api_keys: tuple[str, ...]) -> str:
    """$refused_key: 1 for an upload (POST, PUT) that presents no key the service knows,
    from the head alone. Keys of other characters than these (none a generator writes)
    are left to the service's own check, after the body: a key header is all nginx asks."""
    if not api_keys:
        return '    map $request_method $refused_key { default ""; }'
    plain = [key for key in api_keys if PLAIN_KEY.fullmatch(key)]
    exact = [f'        "~^{re.escape(key)}$" 1;' for key in plain]
    bearer = [f'        "~*^bearer[ \\t]+{re.escape(key)}[ \\t]*$" 1;' for key in plain]
    any_key = len(plain) < len(api_keys)
    anything = '        "~." 1;' if any_key else ""
    return "\n".join(
        [
            "    map $http_x_api_key $key_in_x_api_key {",
            *exact,
            anything,
            '        default "";',
            "    }",
            "    map $http_authorization $key_in_bearer {",
            *bearer,
            anything,
            '        default "";',
            "    }",
            '    map "$request_method:$key_in_x_api_key$key_in_bearer" $refused_key {',
            '        "~^(POST|PUT):$" 1;',
            '        default "";',
            "    }",
        ]
    )


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
