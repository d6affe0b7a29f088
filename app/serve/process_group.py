"""A child process in a session and process group of its own, and what it starts: no
terminal's or group's signal reaches it, it is signalled, watched and killed as a whole
(a killed master's workers included), and it gets a graceful stop signal of its own
choosing if its parent dies outright. Linux (prctl)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import signal
import subprocess

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Enough for the front's most connections (front.MAX_WORKER_CONNECTIONS, two files each);
# a hard limit of a million or "unlimited" is not a reason to ask for more.
OPEN_FILES_WANTED = 65536


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def raise_open_files_limit() -> tuple[int, int] | None:
    """The soft open-file limit up to the hard one (at most OPEN_FILES_WANTED), for this
    process and what it starts: systemd gives services 1024 soft (and 524288 hard), and
    nginx's accept() then failed with EMFILE at the 1025th connection. (before, after),
    or None where it was high enough already or could not be raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    if soft != resource.RLIM_INFINITY and soft >= wanted:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        return None
    return soft, wanted


def become_subreaper() -> None:
    """Orphans of this process's descendants come to it, not to init."""
    _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class ProcessGroup:
    """A child leading a session (and process group) of its own, with whatever it starts
    (gunicorn's or nginx's workers)."""

    def __init__(self, name: str, process: subprocess.Popen):
        self.name = name
        self.process = process
        self.pid = process.pid
        self.status: int | None = None  # the exit code once reaped; -N: killed by signal N

    @property
    def running(self) -> bool:
        return self.status is None

    def group_alive(self) -> bool:
        """The leader or any of its children (workers) is still there."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # nginx's workers under another user: still there
            return True
        return True

    def signal(self, signum: int) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def ended(self, status: int) -> None:
        self.status = os.waitstatus_to_exitcode(status)
        self.process.returncode = self.status  # reaped here: Popen must not wait for it again

    def how_it_ended(self) -> str:
        if self.status is not None and self.status < 0:
            return f"was killed by {signal.Signals(-self.status).name}"
        return f"exited with status {self.status}"

    def exit_status(self) -> int:
        return 128 - self.status if self.status < 0 else self.status


def spawn(name: str, command: list[str], parent_death: int, **options) -> ProcessGroup:
    """In a session of its own (no terminal, no group signal reaches it); if this
    process dies outright, the child gets `parent_death` (a graceful stop)."""
    prctl, parent = _libc().prctl, os.getpid()

    def stop_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, parent_death, 0, 0, 0)
        if os.getppid() != parent:  # died before the line above
            os.kill(os.getpid(), parent_death)

    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=stop_with_parent, **options
    )
    return ProcessGroup(name, process)
