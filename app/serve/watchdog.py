"""The supervisor's watch on a half that is there but does not answer: a SIGSTOPped nginx
or gunicorn worker held every connection it had accepted (/ping 0 of 4), nothing was
logged, and gunicorn's own timeout replaced its worker only after 123 s.

Every PROBE_EVERY_S each half is asked through its own door: gunicorn `GET /ping` on
its unix socket (its port where it serves alone), nginx `GET /.front-health` (answered
by nginx itself, not logged) on the service's port. A half that misses FAILURES_TO_TELL
probes in a row is said in the log once, and its recovery too. A process of either half
that stays stopped (state T: SIGSTOP, SIGTSTP) for STOPPED_LIMIT_S is killed: a worker
is then replaced by its master (nginx's and gunicorn's both start another); a master's
end ends its half, and the service stops as for any half that ends (ExitStatus), for a
restart policy to restart it. A process stopped by a debugger (state t) is left alone.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("app.serve.supervisor")

PROBE_EVERY_S = 2.0
PROBE_TIMEOUT_S = 2.0
FAILURES_TO_TELL = 3
STOPPED_LIMIT_S = 5.0
FRONT_HEALTH_PATH = "/.front-health"  # front.py: nginx answers it itself


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


@dataclass
class Probe:
    """How to ask one half whether it answers."""

    name: str  # gunicorn, nginx
    group: Callable[[], int | None]  # its process group (its leader's pid), while it runs
    path: str  # the URL path asked
    unix_socket: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    failures: int = 0
    failing_since: float | None = field(default=None, repr=False)

    def answers(self) -> bool:
        connection = (
            UnixHTTPConnection(self.unix_socket, PROBE_TIMEOUT_S)
            if self.unix_socket
            else http.client.HTTPConnection(self.host, self.port, timeout=PROBE_TIMEOUT_S)
        )
        try:
            connection.request("GET", self.path, headers={"Connection": "close"})
            connection.getresponse().read()  # any answer is an answer: a 503 while loading too
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()


def probe_host(host: str) -> str:
    """Where to reach a service listening on `host`: loopback for every interface."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104  # nosec B104 - not a bind


class Watchdog:
    def __init__(self, probes: list[Probe], active: Callable[[], bool]):
        """active(): whether to watch now (not while the service stops)."""
        self.probes = probes
        self.active = active
        self.stopped_since: dict[int, float] = {}
        self._done = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="watchdog", daemon=True).start()

    def stop(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.wait(PROBE_EVERY_S):
            if not self.active():
                continue
            for probe in self.probes:
                self.check(probe)
            self.kill_long_stopped()

    def check(self, probe: Probe) -> None:
        if probe.answers():
            if probe.failures >= FAILURES_TO_TELL:
                log.info("%s answers again, after %.0f s", probe.name, time.monotonic() - probe.failing_since)
            probe.failures, probe.failing_since = 0, None
            return
        probe.failures += 1
        if probe.failures == 1:
            probe.failing_since = time.monotonic()
        if probe.failures == FAILURES_TO_TELL and self.active():
            stopped = [pid for pid in self._group_pids(probe) if process_state(pid) == "T"]
            log.error(
                "%s does not answer %s (%d probes of %g s in a row)%s",
                probe.name,
                probe.path,
                FAILURES_TO_TELL,
                PROBE_TIMEOUT_S,
                f"; stopped (SIGSTOP): pid {', '.join(map(str, stopped))}" if stopped else "",
            )

    def kill_long_stopped(self) -> None:
        now = time.monotonic()
        seen = set()
        for probe in self.probes:
            for pid in self._group_pids(probe):
                if process_state(pid) != "T":
                    continue
                seen.add(pid)
                since = self.stopped_since.setdefault(pid, now)
                if now - since >= STOPPED_LIMIT_S and self.active():
                    log.error(
                        "%s process %d has been stopped (SIGSTOP) for %.0f s: killed, its master starts another",
                        probe.name,
                        pid,
                        now - since,
                    )
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
        self.stopped_since = {pid: since for pid, since in self.stopped_since.items() if pid in seen}

    @staticmethod
    def _group_pids(probe: Probe) -> list[int]:
        group = probe.group()
        return [] if group is None else processes_in_group(group)


def processes_in_group(group: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:  # after the name: state, ppid, pgrp
                pids.append(int(stat.parent.name))
    return pids


def process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""
