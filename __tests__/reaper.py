"""The test run's watchdog: whatever a run starts dies with it, however pytest ends.

Why: fixtures stop what they start, but not when pytest itself is killed (SIGKILL, the
OOM killer, a CI job's time limit) or a second Ctrl-C cuts the teardown short; and the
services run in sessions of their own (start_new_session), out of reach of a signal to
pytest's process group. A first CI run stopped at its time limit left a service
(supervisor + gunicorn) running for an hour.

How: conftest.py (in the controller, not in xdist's workers) calls `start()` before any
test runs. It puts a marker unique to the run in os.environ, DARKNET_TEST_RUN=<uuid>, that
every process a test starts inherits, and starts this file as a watchdog in a session of
its own, out of pytest's process tree. The watchdog waits for pytest to end (EOF on a
pipe whose write end only pytest holds; pytest's pid polled each second, for a forked
child holding the pipe too), then removes the containers labelled with the marker and
stops the run's processes: SIGTERM, up to 3 s, SIGKILL. The run's processes are those
whose /proc/PID/environ carries its marker, their descendants (nginx and Chromium's
helpers overwrite their environment with their process titles), and pytest's
descendants seen while it ran (a test may give a process an environment of its own).
Other runs have other markers; pytest's ancestors (the user's shell) and other watchdogs
are never touched.

Only the standard library here: the watchdog runs as `python -I reaper.py ...`.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

MARKER = "DARKNET_TEST_RUN"
LABEL = "darknet-test-run"  # on every container a test runs: --label darknet-test-run=<run>
WATCHDOG = "DARKNET_TEST_REAPER"  # in each watchdog's environment: watchdogs spare each other
GRACE_S = 3.0
# Never stopped, nor what they started: rootless podman's pause process (the user's,
# whoever started it first) and a package install (run.sh installs nginx where missing
# as root), which would leave dpkg half done.
SPARED_NAMES = ("catatonit", "apt-get", "dpkg")
_kept: list[int] = []  # the pipe's write end: held until pytest exits


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    sid: int
    start: int  # clock ticks after boot: a pid and its start name one process, a reused pid another
    name: str
    zombie: bool
    marker: str | None = None
    watchdog: bool = False

    @property
    def spared(self) -> bool:
        return self.watchdog or self.name in SPARED_NAMES


def read_process(pid: int, environ: bool = False) -> Process | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:  # gone
        return None
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if environ else []
    except OSError:  # another user's
        env = []
    name, fields = stat[stat.index(b"(") + 1 : stat.rindex(b")")], stat[stat.rindex(b")") + 2 :].split()
    marker = next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(f"{MARKER}=".encode())), None)
    return Process(
        pid=pid,
        ppid=int(fields[1]),
        sid=int(fields[3]),
        start=int(fields[19]),
        name=name.decode(errors="replace"),
        zombie=fields[0] in (b"Z", b"X"),
        marker=marker,
        watchdog=f"{WATCHDOG}=1".encode() in env,
    )


def process_table(environ: bool = False) -> dict[int, Process]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (process := read_process(int(entry), environ)) is not None:
            table[process.pid] = process
    return table


def ancestors(table: dict[int, Process], pid: int) -> set[int]:
    found = set()
    while pid in table and pid not in found and pid > 1:
        found.add(pid)
        pid = table[pid].ppid
    return found | {1}


def descendants(table: dict[int, Process], roots: set[int], excluded: frozenset[int] = frozenset()) -> set[int]:
    """The roots and every process below them, none in `excluded` nor below one."""
    found, frontier = set(), {pid for pid in roots if pid in table} - excluded
    while frontier:
        found |= frontier
        frontier = {p.pid for p in table.values() if p.ppid in frontier} - found - excluded
    return found


def run_processes(
    table: dict[int, Process], run: str, tracked: set[tuple[int, int]], protected: set[int]
) -> dict[int, Process]:
    """The processes of run `run` in `table` (read with environ=True): marked, or seen
    below pytest (`tracked`: pid and start), with their descendants and the members of
    sessions they lead. Never one in `protected`, a watchdog, one SPARED_NAMES names, nor
    one below those; nor a zombie (dead already)."""
    excluded = frozenset(descendants(table, {p.pid for p in table.values() if p.spared}) | protected)
    seeds = {p.pid for p in table.values() if p.marker == run or (p.pid, p.start) in tracked}
    found = descendants(table, seeds, excluded)
    leaders = {pid for pid in found if table[pid].sid == pid}
    found |= descendants(table, {p.pid for p in table.values() if p.sid in leaders}, excluded)
    return {pid: table[pid] for pid in found if not table[pid].zombie}


def label_args() -> list[str]:
    """For every `docker/podman run` of a test: the label the watchdog removes containers by."""
    return ["--label", f"{LABEL}={os.environ[MARKER]}"]


def remove_containers(run: str, runner=subprocess.run) -> list[str]:
    """`rm -f` the containers labelled with the run's marker, on each engine installed."""
    removed = []
    for engine, stop_at_once in (("podman", ["--time", "0"]), ("docker", [])):
        if not shutil.which(engine):
            continue
        try:
            listed = runner(
                [engine, "ps", "--all", "--quiet", "--filter", f"label={LABEL}={run}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            ids = listed.stdout.split() if listed.returncode == 0 else []  # docker without a daemon
            if ids:
                runner([engine, "rm", "--force", *stop_at_once, *ids], capture_output=True, timeout=120)
                removed += [f"{engine} {container}" for container in ids]
        except (OSError, subprocess.TimeoutExpired):
            continue
    return removed


def _signal(targets: dict[int, Process], signum: int) -> None:
    for process in targets.values():
        now = read_process(process.pid)
        if now is not None and now.start == process.start:  # the same process, not a reused pid
            with contextlib.suppress(OSError):  # gone meanwhile
                os.kill(process.pid, signum)


def reap(run: str, tracked: set[tuple[int, int]], protected: set[int]) -> tuple[dict[int, Process], list[str]]:
    containers: list[str] = []
    remover = threading.Thread(target=lambda: containers.extend(remove_containers(run)), daemon=True)
    remover.start()
    stopped = run_processes(process_table(environ=True), run, tracked, protected)
    _signal(stopped, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and run_processes(process_table(environ=True), run, tracked, protected):
        time.sleep(0.1)
    for _ in range(50):  # again until none is left: a dying parent may have forked one more
        left = run_processes(process_table(environ=True), run, tracked, protected)
        if not left:
            break
        stopped.update(left)
        _signal(left, signal.SIGKILL)
        time.sleep(0.05)
    remover.join(180)
    return stopped, containers


def alive(pid: int, start: int) -> bool:
    process = read_process(pid)
    return process is not None and process.start == start and not process.zombie


def watch(run: str, pytest_pid: int, pytest_start: int, pipe: int) -> None:
    protected = {os.getpid()} | ancestors(process_table(), pytest_pid) - {pytest_pid}
    tracked: set[tuple[int, int]] = set()
    while alive(pytest_pid, pytest_start):
        table = process_table()
        below = descendants(table, {pytest_pid}) - {pytest_pid, os.getpid()}
        tracked = {(pid, start) for pid, start in tracked if pid in table and table[pid].start == start}
        tracked |= {(pid, table[pid].start) for pid in below}
        if select.select([pipe], [], [], 1.0)[0] and not os.read(pipe, 1):
            break  # EOF: pytest has exited, its last write end closed
    stopped, containers = reap(run, tracked, protected)
    if stopped or containers:
        left = ", ".join([f"{p.pid} ({p.name})" for p in stopped.values()] + containers)
        print(f"reaper: the test run {MARKER}={run} ended and left these running, now stopped: {left}", file=sys.stderr)


def start() -> str:
    """In pytest's controller, before any test: mark the run, start its watchdog. Returns the marker."""
    run = uuid.uuid4().hex
    os.environ[MARKER] = run
    if not Path("/proc/self/environ").exists():
        return run  # no /proc (not Linux): no watchdog
    read_end, write_end = os.pipe()  # both non-inheritable: only pytest holds the write end
    subprocess.run(
        [sys.executable, "-I", __file__, run, str(os.getpid()), str(read_process(os.getpid()).start), str(read_end)],
        pass_fds=(read_end,),
        start_new_session=True,  # a Ctrl-C or a kill of pytest's process group leaves it be
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env={**os.environ, WATCHDOG: "1"},
        check=True,
    )
    os.close(read_end)
    _kept.append(write_end)
    return run


if __name__ == "__main__":
    # Forked again, out of pytest's process tree: a CI runner that kills pytest's tree at
    # its time limit leaves the watchdog be (start() waits for the first half only).
    if os.fork() == 0:
        run_id, pid, started, fd = sys.argv[1:]
        watch(run_id, int(pid), int(started), int(fd))
