"""The buffering front: nginx before gunicorn, as gunicorn's deployment guide and
SageMaker's bring-your-own-container example put it.

gunicorn's threads block on a request until it has arrived whole: eight connections
that sent one byte, or fifty that trickle a photo in, held every thread and /ping
with them. nginx reads each request whole (headers within 10 s, no pause of more
than 20 s in a body, bodies past a buffer to its private temp files), then hands it
to gunicorn over a unix socket in a private directory; it also takes the answer whole,
so a slow reader holds no thread either. It refuses from the head what needs no body
(no key, a body where no photo goes), bounds what one client (an address, an IPv6
/64, the real one behind TRUSTED_PROXIES) may hold, and fits its connections in its
open-file limit (front_maps.py). Errors nginx answers itself keep the service's JSON
shape (front_pages.py). This module writes its config; app/serve/supervisor.py runs it
beside gunicorn.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import resource
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .front_maps import access_log, body_maps, client_limits, key_maps, real_ip
from .front_pages import error_locations
from .watchdog import FRONT_HEALTH_PATH

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10  # the whole request head
BODY_PAUSE_S = 20  # longest silence inside a body (nginx times reads, not the whole body)
SEND_PAUSE_S = 30
KEEPALIVE_S = 5
# What one client (an address, an IPv6 /64) and everyone may hold of the front (README,
# Limits), at most; fewer where the open-file limit allows fewer connections (limits_for).
# The connections a client holds once its request head is in: enough for a lab's batch
# uploads and its browser; one client took all 4096 with slow POSTs. Uploads are bodies
# being received or waiting for their answer: each at most MAX_UPLOAD_MB of temp file
# on disk and BODY_BUFFER of nginx's memory. Six addresses with 90 slow uploads each
# once took all 512: a client's share is a sixteenth of them.
MAX_WORKER_CONNECTIONS = 16384
FEW_CONNECTIONS = 4096  # below this the supervisor warns: a file limit left at 1024, say
CONNECTIONS_PER_CLIENT = 256
UPLOADS_PER_CLIENT = 32
UPLOADS_IN_ALL = 512
# A connection costs nginx a file (its socket) and, for an upload, one more (the temp file
# of its body, or the socket to gunicorn): worker_connections must fit the open-file limit
# twice over, or nginx's accept() fails with EMFILE and /ping with it.
FILES_PER_CONNECTION = 2
SPARE_FILES = 64  # logs, the listening socket, the config
BODY_BUFFER = "256k"  # 8 MB buffers let 60-150 parked uploads take nginx to 1.1 GB
WORKER_USERS = ("www-data", "nobody")  # nginx's workers when the service runs as root


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
    api_keys: tuple[str, ...] = ()  # checked from the head, before any body
    trusted_proxies: tuple[str, ...] = ()  # networks whose X-Forwarded-For names the client
    open_files: int = 0  # the open-file limit nginx runs under; 0: this process's

    @property
    def socket(self) -> Path:
        return gunicorn_socket(self.directory)


BEHIND_FRONT_ENV = "DETECTOR_BEHIND_FRONT"  # tells gunicorn.conf.py that nginx is in front


def gunicorn_socket(run_dir: Path) -> Path:
    """Where gunicorn listens behind the front, in the run's private directory. Short: a
    unix socket path has 107 bytes, TMPDIR included."""
    return run_dir / "g.sock"


@dataclass(frozen=True)
class Limits:
    connections: int  # worker_connections
    per_client: int
    uploads_per_client: int
    uploads_in_all: int


def limits_for(open_files: int) -> Limits:
    """What the front takes within `open_files` descriptors: the usual limits where the
    file limit allows them, each shrunk in proportion where it does not."""
    connections = max(64, min(MAX_WORKER_CONNECTIONS, (open_files - SPARE_FILES) // FILES_PER_CONNECTION))
    uploads_in_all = min(UPLOADS_IN_ALL, connections // 4)  # an upload: its connection, then one to gunicorn
    return Limits(
        connections=connections,
        per_client=min(CONNECTIONS_PER_CLIENT, connections // 8),
        uploads_per_client=max(1, min(UPLOADS_PER_CLIENT, uploads_in_all // 16)),
        uploads_in_all=uploads_in_all,
    )


def open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
    )


def render_config(settings: FrontSettings) -> str:
    directory = settings.directory
    open_files = settings.open_files or open_files_limit()
    limits = limits_for(open_files)
    worker = worker_user(directory)
    # As root the workers run as an unprivileged user that may reach the socket in the
    # run's directory (prepare_directory), else as root (nginx's default, nobody, could
    # not); as anyone else they are that user, and nginx may not be told another.
    if worker is not None:
        user = f"user {worker.pw_name} {grp.getgrgid(worker.pw_gid).gr_name};"
    else:
        user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.geteuid() == 0 else ""
    return _TEMPLATE.render(
        user=user,
        open_files=open_files,
        directory=directory,
        connections=limits.connections,
        header_timeout_s=HEADER_TIMEOUT_S,
        body_pause_s=BODY_PAUSE_S,
        send_pause_s=SEND_PAUSE_S,
        keepalive_s=KEEPALIVE_S,
        max_body_bytes=int(settings.max_body_mb * 1024 * 1024),
        body_buffer=BODY_BUFFER,
        real_ip=real_ip(settings.trusted_proxies),
        access_log=access_log(),
        client_limits=client_limits(limits),
        key_maps=key_maps(settings.api_keys),
        body_maps=body_maps(settings.max_body_mb),
        socket=settings.socket,
        listen=listen_address(settings.host, settings.port),
        upstream_timeout_s=int(settings.upstream_timeout_s),
        health_path=FRONT_HEALTH_PATH,
        errors=error_locations(settings, limits),
    )


# nginx.conf as a template beside this module: values only, every decision made above.
# Not HTML: nothing to escape (select_autoescape leaves a .j2 string template alone).
_TEMPLATE = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
).get_template("nginx.conf.j2")


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


def worker_user(directory: Path) -> pwd.struct_passwd | None:
    """The unprivileged user nginx's workers run as when the service runs as root
    (www-data, Debian's nginx user, else nobody); None where they are the service's own
    user, or where no such user could reach the run's directory (a private TMPDIR):
    then they stay root, and the supervisor says so."""
    if os.geteuid() != 0:
        return None
    for name in WORKER_USERS:
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return user if _reachable(directory.parent, user) else None
    return None


def _reachable(path: Path, user: pwd.struct_passwd) -> bool:
    """Every folder from / to `path` lets `user` through (search permission)."""
    groups = {user.pw_gid, *(group.gr_gid for group in grp.getgrall() if user.pw_name in group.gr_mem)}
    for folder in (path, *path.parents):
        info = folder.stat()
        if info.st_uid == user.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def prepare_directory(settings: FrontSettings) -> pwd.struct_passwd | None:
    """The run's directory open to nginx's workers' group (0710: through, not a listing)
    when they are another user; its config, which holds the keys' patterns, for root only."""
    worker = worker_user(settings.directory)
    if worker is not None:
        os.chown(settings.directory, -1, worker.pw_gid)
        os.chmod(settings.directory, 0o710)  # noqa: S103  # nosec B103 - the workers pass through, no more
    return worker


def nginx_command(settings: FrontSettings, binary: str) -> list[str]:
    """Writes nginx's config into the front's directory; the command that runs it in
    the foreground. The supervisor (app/serve/supervisor.py) starts, watches and stops it."""
    prepare_directory(settings)
    config = settings.directory / "nginx.conf"
    descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w") as stream:
        stream.write(render_config(settings))
    command = [binary, "-p", str(settings.directory), "-c", str(config)]
    if _version(binary) >= (1, 19, 5):  # before the config is read, errors go to stderr too
        command[1:1] = ["-e", "stderr"]
    return command
