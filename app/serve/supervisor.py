"""The service's two processes, gunicorn and the nginx front (front.py), started,
watched and stopped together by this one small process: run.sh execs it, so it is the
service's main process under systemd and PID 1 in the container.

Why a process of its own: a stop is a signal, and it does not always come to one
process. Ctrl-C sends SIGINT to the terminal's whole process group; systemd's default
stop sends SIGTERM to every process of the unit. nginx quits at once on either (its
graceful stop is SIGQUIT) and gunicorn's workers quit at once on SIGINT, dropping every
photo in flight. So gunicorn and nginx each run in a session of their own, out of reach
of the terminal's signals, and only this process tells them to stop, in order:

1. gunicorn gets SIGTERM: its workers finish the photos they hold (at most
   REQUEST_DEADLINE_S, see Settings.drain_s) while nginx answers new requests with the JSON 503
   `unavailable` and Retry-After;
2. once gunicorn is gone, nginx gets SIGQUIT: it sends the answers it holds, then exits;
3. exit 0. A second Ctrl-C (or SIGQUIT) stops both at once.

If either half ends unasked (a crash, the OOM killer), the other is stopped the same
way and the exit status says which (ExitStatus), so a restart policy restarts the whole
service; each half's process group is killed to its last process, so no orphan keeps
the port. Each run has its own private directory (the socket, nginx's config and pid
and temp files, the metrics), removed at the end; those of a run that was killed
outright are removed at the next start.
"""

from __future__ import annotations

import enum
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.log_lines import Fields, formatter
from app.serve.front import (
    BEHIND_FRONT_ENV,
    FEW_CONNECTIONS,
    FrontError,
    FrontSettings,
    check_port,
    gunicorn_socket,
    limits_for,
    listen_address,
    nginx_binary,
    nginx_command,
    open_files_limit,
    worker_user,
)
from app.serve.front_maps import FRONT_LOG_MARK
from app.serve.process_group import ProcessGroup, become_subreaper, raise_open_files_limit, spawn
from app.serve.watchdog import FRONT_HEALTH_PATH, Probe, Watchdog, probe_host
from app.settings import FRONT_QUIT_S, KILL_WAIT_S, STARTUP_ERRORS, Settings

log = logging.getLogger("app.serve.supervisor")

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR_PREFIX = "detector-run-"  # then the supervisor's pid, for the operator's eyes
# Locked (flock) by the run's supervisor for its whole life; the kernel releases it however
# the supervisor ends. A pid cannot say whether a run is alive: in a PID namespace of its
# own (a container sharing /tmp, unshare) every other run's pid looks dead.
RUN_LOCK = "run.lock"
UNLOCKED_RUN_GRACE_S = 60  # a directory made a moment ago, its lock not yet taken
POLL_S = 0.1
START_CHECK_S = 0.5  # nginx that cannot start (a port in use, a bad config) exits within this
# Signals for gunicorn's master, passed on: reload the workers (HUP), one more or one
# fewer (TTIN, TTOU), reopen its log files (USR1).
PASSED_TO_GUNICORN = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1)


class ExitStatus(enum.IntEnum):
    """How the service ended; README, "Running it day to day", has the table. A gunicorn
    that ended on its own passes its own status on (1: it could not start), or 128 + the
    signal that killed it (137: SIGKILL, as a shell says it)."""

    STOPPED = 0  # asked to stop, photos in flight answered
    CANNOT_START = 1  # a setting, the model, the port: the `cannot start:` line says which
    FRONT_ENDED = 69  # nginx ended unasked (sysexits' EX_UNAVAILABLE); gunicorn was stopped


class Supervisor:
    def __init__(self, settings: Settings, run_dir: Path):
        self.settings = settings
        self.run_dir = run_dir
        self.gunicorn: ProcessGroup | None = None
        self.nginx: ProcessGroup | None = None
        self.stop_asked_by: int | None = None  # the signal that asked for the stop
        self.at_once_by: int | None = None  # a second Ctrl-C, or SIGQUIT

    # -- signals ------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            signal.signal(signum, self._on_stop_signal)
        for signum in PASSED_TO_GUNICORN:
            signal.signal(signum, self._pass_to_gunicorn)
        # Orphans (a killed master's workers) come to this process, which reaps them and
        # knows when a half is gone to its last process; PID 1 gets them anyway.
        become_subreaper()

    def _on_stop_signal(self, signum: int, frame) -> None:
        if signum == signal.SIGQUIT or (signum == signal.SIGINT and self.stop_asked_by is not None):
            self.at_once_by = signum
        elif self.stop_asked_by is None:
            self.stop_asked_by = signum
        # A repeated SIGTERM (an orchestrator that sends it again) keeps the drain going.

    def _pass_to_gunicorn(self, signum: int, frame) -> None:
        if self.gunicorn is not None:
            self.gunicorn.signal(signum)

    # -- starting -----------------------------------------------------------------------

    def start_gunicorn(self, bind: str) -> None:
        env = dict(os.environ)
        # The workers' metrics files, in the run's directory: gone with it however gunicorn ends.
        if "PROMETHEUS_MULTIPROC_DIR" not in env:
            (self.run_dir / "metrics").mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.run_dir / "metrics")
        if bind.startswith("unix:"):  # behind nginx: its limits on a request's head are the service's
            env[BEHIND_FRONT_ENV] = "1"
        script = Path(sys.executable).with_name("gunicorn")
        program = [str(script)] if script.exists() else [sys.executable, "-m", "gunicorn"]
        command = [*program, "--config", str(ROOT / "gunicorn.conf.py"), "--bind", bind]
        self.gunicorn = spawn("gunicorn", command, signal.SIGTERM, env=env, cwd=ROOT)

    def start_nginx(self, binary: str) -> None:
        front = FrontSettings(
            port=self.settings.port,
            host=self.settings.host,
            directory=self.run_dir,
            max_body_mb=self.settings.max_upload_mb,
            # A Label Studio predict (all its tasks) may take longer than one photo.
            upstream_timeout_s=max(self.settings.request_deadline_s, self.settings.label_studio.timeout_s) + 30,
            cors_any_origin=self.settings.cors_origins == ("*",),
            api_keys=self.settings.api_keys,
            trusted_proxies=self.settings.trusted_proxies,
        )
        limits = limits_for(front.open_files or open_files_limit())
        if limits.connections < FEW_CONNECTIONS:
            log.warning(
                "open files are limited to %d: the front takes at most %d connections, %d per client; "
                "raise the limit (LimitNOFILE=65536 in a systemd unit, ulimit -n in a container)",
                open_files_limit(),
                limits.connections,
                limits.per_client,
            )
        if os.geteuid() == 0 and worker_user(self.run_dir) is None:
            log.warning("nginx's workers run as root: no unprivileged user can reach %s (TMPDIR)", self.run_dir)
        command = nginx_command(front, binary)
        # nginx's own lines go through the service's log, in its one-line format.
        self.nginx = spawn("nginx", command, signal.SIGQUIT, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._relay, args=(self.nginx.process.stderr,), name="nginx-log", daemon=True).start()

    def _relay(self, stream) -> None:
        socket_path = gunicorn_socket(self.run_dir)
        for line in stream:
            # gunicorn removes its socket as it stops, whoever asked it (kill -TERM on its pid too).
            stopping = self.stop_asked_by is not None or not self.gunicorn.running or not socket_path.exists()
            relay_nginx_line(line.rstrip(), stopping)

    def wait_for(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Reaps children and polls until condition() holds (True), or timeout or a
        stop at once (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.reap()
            if condition():
                return True
            if self.at_once_by is not None or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(POLL_S)

    def reap(self) -> None:
        """Every child that ended, ours and adopted orphans alike (no zombie stays)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for half in (self.gunicorn, self.nginx):
                if half is not None and half.pid == pid:
                    half.ended(status)

    # -- running ------------------------------------------------------------------------

    def run(self) -> int:
        settings = self.settings
        binary = nginx_binary() if settings.front != "none" else None
        if settings.front == "nginx" and binary is None:
            return cannot_start("FRONT=nginx but nginx is not installed (apt-get install nginx)")
        try:
            check_port(settings.host, settings.port)
        except FrontError as exc:
            return cannot_start(str(exc))
        if binary is None:
            log.warning(
                "no nginx (FRONT=%s): gunicorn serves port %d itself; slow clients can hold its threads",
                settings.front,
                settings.port,
            )
            self.start_gunicorn(listen_address(settings.host, settings.port))
            return self.supervise()
        socket_path = gunicorn_socket(self.run_dir)
        self.start_gunicorn(f"unix:{socket_path}")
        # It listens once its settings and model were checked (gunicorn.conf.py, on_starting).
        if not self.wait_for(lambda: socket_path.exists() or not self.gunicorn.running or self.stop_asked_by):
            return self.stop_at_once()
        if not self.gunicorn.running:
            return self.gunicorn.exit_status() or ExitStatus.CANNOT_START  # it said why
        if self.stop_asked_by is not None:
            return self.stop()
        self.start_nginx(binary)
        if self.wait_for(lambda: not self.nginx.running, START_CHECK_S):
            self.wait_for(lambda: not self.nginx.group_alive(), KILL_WAIT_S)
            print(
                f"cannot start: nginx {self.nginx.how_it_ended()} at start (port {settings.port} in use?)",
                file=sys.stderr,
                flush=True,
            )
            self.stop()
            return ExitStatus.CANNOT_START
        log.info("nginx (pid %d) listens on %s", self.nginx.pid, listen_address(settings.host, settings.port))
        return self.supervise()

    def supervise(self) -> int:
        """Until a stop is asked or a half ends; then the stop, and its exit status. A half
        that stops answering meanwhile is said, a stopped process of it replaced (watchdog.py)."""
        halves = [half for half in (self.gunicorn, self.nginx) if half is not None]
        watchdog = Watchdog(self.probes(), active=lambda: self.stop_asked_by is None and self.at_once_by is None)
        watchdog.start()
        try:
            self.wait_for(lambda: self.stop_asked_by is not None or any(not half.running for half in halves))
        finally:
            watchdog.stop()
        if self.at_once_by is not None:
            return self.stop_at_once()
        if self.stop_asked_by is not None:
            log.info(
                "%s: finishing the photos in flight (at most %g s), then stopping; Ctrl-C again stops at once",
                signal.Signals(self.stop_asked_by).name,
                self.settings.drain_s,
            )
            return self.stop()
        if not self.gunicorn.running:
            if self.gunicorn.status == 0:  # stopped by a signal of its own (kill -TERM on its pid): a stop
                log.info("gunicorn (pid %d) stopped; stopping the front", self.gunicorn.pid)
                return self.stop()
            log.error("gunicorn (pid %d) %s; stopping the service", self.gunicorn.pid, self.gunicorn.how_it_ended())
            code = self.stop()
            return code if code != ExitStatus.STOPPED else self.gunicorn.exit_status()
        log.error("nginx (pid %d) %s; stopping the service", self.nginx.pid, self.nginx.how_it_ended())
        code = self.stop()
        return code if code != ExitStatus.STOPPED else ExitStatus.FRONT_ENDED

    def probes(self) -> list[Probe]:
        host, port = probe_host(self.settings.host), self.settings.port

        def group_of(half: ProcessGroup):
            return lambda: half.pid if half.running else None

        if self.nginx is None:  # gunicorn alone, on the service's port
            return [Probe("gunicorn", group_of(self.gunicorn), "/ping", host=host, port=port)]
        return [
            Probe("gunicorn", group_of(self.gunicorn), "/ping", unix_socket=str(gunicorn_socket(self.run_dir))),
            Probe("nginx", group_of(self.nginx), FRONT_HEALTH_PATH, host=host, port=port),
        ]

    def stop(self) -> int:
        """gunicorn drains, then nginx quits gracefully; a second Ctrl-C cuts it short."""
        gunicorn, nginx = self.gunicorn, self.nginx
        if gunicorn.running:
            gunicorn.signal(signal.SIGTERM)
        else:  # its master is gone: its workers (if any are left) finish and go
            gunicorn.signal_group(signal.SIGTERM)
        if not self.wait_for(lambda: not gunicorn.group_alive(), self.settings.drain_s + KILL_WAIT_S):
            if self.at_once_by is not None:
                return self.stop_at_once()
            log.error("gunicorn did not stop within %g s: killed", self.settings.drain_s + KILL_WAIT_S)
            gunicorn.signal_group(signal.SIGKILL)
            self.wait_for(lambda: not gunicorn.group_alive(), KILL_WAIT_S)
        if nginx is not None:
            nginx.signal_group(signal.SIGQUIT)  # the master, or a killed master's workers
            if not self.wait_for(lambda: not nginx.group_alive(), FRONT_QUIT_S):
                if self.at_once_by is not None:
                    return self.stop_at_once()
                nginx.signal_group(signal.SIGKILL)
                self.wait_for(lambda: not nginx.group_alive(), KILL_WAIT_S)
        return ExitStatus.STOPPED

    def stop_at_once(self) -> int:
        signum = self.at_once_by or signal.SIGINT
        log.warning("%s: stopping at once; photos in flight are dropped", signal.Signals(signum).name)
        for half in (self.gunicorn, self.nginx):
            if half is not None:
                half.signal_group(signal.SIGKILL)
        self.at_once_by = None  # the waits below must not return early
        for half in (self.gunicorn, self.nginx):
            if half is not None:
                self.wait_for(lambda half=half: not half.group_alive(), KILL_WAIT_S)
        return 128 + signum


# nginx's line: `2026/01/01 10:00:00 [error] 12#12: *3 connect() to unix:... failed ...`
NGINX_LEVEL = re.compile(r"^\S+ \S+ \[(\w+)\] ")
NGINX_LEVELS = {"emerg": logging.CRITICAL, "alert": logging.CRITICAL, "crit": logging.ERROR, "error": logging.ERROR}
# While gunicorn drains it no longer listens, and nginx answers the JSON 503
# `unavailable`, as meant: its complaint about that ([crit] for a socket file that is
# gone) is no error of the service.
UPSTREAM_GONE = re.compile(r"connect\(\) to unix:.* failed|upstream prematurely closed")
REQUEST_LINE = re.compile(r'request: "([^"]*)"')
MAX_FIELD_CHARS = 200  # as the app's request lines (request_log.py): a 8 KB URL is not a 8 KB line


def relay_nginx_line(line: str, stopping: bool) -> None:
    nginx = logging.getLogger("nginx")
    if line.startswith(FRONT_LOG_MARK):  # a request nginx answered itself: a request line
        try:
            fields = json.loads(line[len(FRONT_LOG_MARK) :])
            fields["status"] = int(fields["status"])
            fields["bytes_in"] = int(fields["bytes_in"] or 0)
        except (ValueError, KeyError, TypeError):
            nginx.warning("%s", line)
            return
        bounded = {name: value[:MAX_FIELD_CHARS] if isinstance(value, str) else value for name, value in fields.items()}
        logging.getLogger("app.request").info(Fields({"front": True, **bounded}))
        return
    if stopping and UPSTREAM_GONE.search(line):
        request = REQUEST_LINE.search(line)
        nginx.info("503 unavailable while gunicorn stops: %s", request.group(1) if request else "a request")
        return
    match = NGINX_LEVEL.match(line)
    nginx.log(NGINX_LEVELS.get(match.group(1), logging.WARNING) if match else logging.ERROR, "%s", line)


def cannot_start(message: str) -> int:
    print(f"cannot start: {message}", file=sys.stderr, flush=True)
    return ExitStatus.CANNOT_START


def remove_stale_run_dirs() -> None:
    """Directories of earlier runs whose supervisor was killed outright (SIGKILL, OOM):
    their nginx temp files can hold whole uploads."""
    for path in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*"):
        try:
            if path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if _abandoned(path):
            shutil.rmtree(path, ignore_errors=True)


def _abandoned(run_dir: Path) -> bool:
    try:
        lock = os.open(run_dir / RUN_LOCK, os.O_RDWR)
    except FileNotFoundError:  # being made now, or a run older than the lock: by its age
        try:
            return time.time() - run_dir.stat().st_mtime > UNLOCKED_RUN_GRACE_S
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # its supervisor holds it: alive, wherever its pid lives
        return False
    finally:
        os.close(lock)
    return True


def claim_run_dir() -> tuple[Path, int]:
    """A private directory (mode 0700) and the descriptor whose lock says it is in use;
    the descriptor is not inherited by nginx or gunicorn (Python's default)."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-"))
    lock = os.open(run_dir / RUN_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return run_dir, lock


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(settings.log_level)


def main() -> int:
    try:
        settings = Settings.from_env()
    except STARTUP_ERRORS as exc:
        return cannot_start(str(exc))
    setup_logging(settings)
    raised = raise_open_files_limit()
    if raised:
        log.info("open files: the limit raised from %d to %d (its hard limit) for nginx's connections", *raised)
    remove_stale_run_dirs()
    run_dir, _lock = claim_run_dir()  # held until this process ends
    supervisor = Supervisor(settings, run_dir)
    supervisor.install_signal_handlers()
    try:
        return supervisor.run()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
