"""The run's watchdog (reaper.py): what a test run started dies with it, however pytest
ends, SIGKILL included; another run's processes and the user's shell are never touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import reaper
from reaper import MARKER, Process, descendants, process_table, run_processes
from support import ROOT, starts_processes

RUN, OTHER = "this-run", "another-run"


def table(*processes: Process) -> dict[int, Process]:
    return {process.pid: process for process in processes}


def proc(pid: int, ppid: int, sid: int, name: str = "python", marker: str | None = None, **more) -> Process:
    return Process(pid=pid, ppid=ppid, sid=sid, start=pid * 10, name=name, zombie=False, marker=marker, **more)


# A terminal's shell (100) runs pytest (101); pytest starts the service in a session of its
# own (200: run.sh's supervisor, gunicorn, nginx with its environment overwritten by its
# title), a bare process (300, an environment of its own); another run (500) has its own.
SHELL = proc(100, 1, 100, "bash")
PYTEST = proc(101, 100, 100)
SUPERVISOR = proc(200, 101, 200, marker=RUN)
GUNICORN = proc(201, 200, 200, "gunicorn", marker=RUN)
NGINX = proc(202, 200, 200, "nginx")
NGINX_WORKER = proc(203, 202, 200, "nginx")
BARE = proc(300, 101, 300, "sleep")
OTHER_RUN = proc(500, 1, 500, marker=OTHER)
OTHER_CHILD = proc(501, 500, 500, "nginx")


def test_the_run_is_its_marked_processes_their_descendants_and_what_pytest_started():
    processes = table(SHELL, PYTEST, SUPERVISOR, GUNICORN, NGINX, NGINX_WORKER, BARE, OTHER_RUN, OTHER_CHILD)
    tracked = {(BARE.pid, BARE.start)}  # seen below pytest while it ran
    assert set(run_processes(processes, RUN, tracked, protected={SHELL.pid, 1})) == {200, 201, 202, 203, 300}


def test_orphans_in_a_marked_session_go_with_it_once_pytest_is_dead():
    # pytest killed, the supervisor too: nginx is init's now, but still in the run's session.
    orphan = proc(202, 1, 200, "nginx")
    processes = table(SHELL, SUPERVISOR, orphan, proc(203, 202, 200, "nginx"))
    assert set(run_processes(processes, RUN, set(), protected={SHELL.pid, 1})) == {200, 202, 203}


def test_another_runs_processes_and_the_shell_are_never_the_runs():
    processes = table(SHELL, PYTEST, SUPERVISOR, OTHER_RUN, OTHER_CHILD)
    assert set(run_processes(processes, RUN, set(), protected={SHELL.pid, 1})) == {SUPERVISOR.pid}
    assert set(run_processes(processes, OTHER, set(), protected={SHELL.pid, 1})) == {500, 501}
    # A marked shell (an exported marker of another run) is spared all the same.
    marked_shell = proc(100, 1, 100, "bash", marker=RUN)
    assert SHELL.pid not in run_processes(table(marked_shell, PYTEST), RUN, set(), protected={SHELL.pid, 1})


def test_watchdogs_package_installs_and_the_dead_are_left_alone():
    watchdog = proc(600, 101, 600, marker=RUN, watchdog=True)
    its_podman = proc(601, 600, 600, "podman", marker=RUN)
    apt = proc(700, 200, 200, "apt-get", marker=RUN)
    dpkg = proc(701, 700, 200, "dpkg", marker=RUN)
    unpacking = proc(702, 701, 200, "sh", marker=RUN)
    dead = Process(pid=800, ppid=200, sid=200, start=1, name="gunicorn", zombie=True, marker=RUN)
    processes = table(SUPERVISOR, watchdog, its_podman, apt, dpkg, unpacking, dead)
    assert set(run_processes(processes, RUN, set(), protected=set())) == {SUPERVISOR.pid}


def test_containers_of_the_run_are_removed_on_each_engine_there(monkeypatch):
    calls = []

    def runner(command, **_):
        calls.append(command)
        engine, action = command[0], command[1]
        if engine == "docker":  # a client without a daemon
            return subprocess.CompletedProcess(command, 1, "", "Cannot connect to the Docker daemon")
        return subprocess.CompletedProcess(command, 0, "c1\nc2\n" if action == "ps" else "", "")

    monkeypatch.setattr(reaper.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert reaper.remove_containers(RUN, runner) == ["podman c1", "podman c2"]
    assert calls == [
        ["podman", "ps", "--all", "--quiet", "--filter", f"label=darknet-test-run={RUN}"],
        ["podman", "rm", "--force", "--time", "0", "c1", "c2"],
        ["docker", "ps", "--all", "--quiet", "--filter", f"label=darknet-test-run={RUN}"],
    ]


def test_this_run_is_marked_and_watched():
    run = os.environ[MARKER]
    assert reaper.label_args() == ["--label", f"darknet-test-run={run}"]
    watchdogs = [p for p in process_table(environ=True).values() if p.watchdog and p.marker == run]
    assert len(watchdogs) == 1 and not watchdogs[0].zombie


# What the killed run does: the service as a user starts it, and a process with an
# environment of its own (no marker), both in sessions of their own; then it waits.
CHILD_TEST = """
import json, os, subprocess, time
from pathlib import Path

import pytest
from support import RunningService

@pytest.mark.e2e
def test_holds_a_service_until_killed(tmp_path):
    service = RunningService({"MODEL_DIR": os.environ["MODEL_DIR"], "WORKERS": "1"}, tmp_path / "service.log")
    service.wait_ready()
    bare = subprocess.Popen(["sleep", "600"], env={"PATH": "/usr/bin:/bin"}, start_new_session=True)
    time.sleep(1.5)  # the watchdog looks below pytest once a second: it has seen the bare one
    ready = {"run": os.environ["DARKNET_TEST_RUN"], "service": service.process.pid, "bare": bare.pid}
    Path(os.environ["REAPER_TEST_READY"]).write_text(json.dumps(ready))
    time.sleep(600)
"""


def alive(processes: dict[int, Process]) -> dict[int, Process]:
    now = process_table()
    return {pid: p for pid, p in processes.items() if pid in now and now[pid].start == p.start and not now[pid].zombie}


def carrying(run: str) -> dict[int, Process]:
    return {p.pid: p for p in process_table(environ=True).values() if p.marker == run and not p.zombie}


@pytest.mark.e2e
def test_killing_pytest_with_sigkill_mid_test_leaves_nothing_of_its_run_10_s_later(model_dir, tmp_path):
    starts_processes("a pytest run that starts the service")
    (tmp_path / "test_killed.py").write_text(textwrap.dedent(CHILD_TEST))
    ready = tmp_path / "ready.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}  # not an xdist worker
    env |= {"PYTHONPATH": str(ROOT / "__tests__"), "MODEL_DIR": str(model_dir), "REAPER_TEST_READY": str(ready)}
    # Another run's process, and this test's own process: neither may be touched.
    other = subprocess.Popen(["sleep", "600"], env={**os.environ, MARKER: "another-run"}, start_new_session=True)
    command = [sys.executable, "-m", "pytest", "-p", "conftest", "-c", str(ROOT / "pyproject.toml")]
    command += ["--rootdir", str(ROOT), "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "run"), "-q"]
    with (tmp_path / "pytest.log").open("w") as log:
        killed = subprocess.Popen(
            [*command, str(tmp_path / "test_killed.py")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    theirs: dict[int, Process] = {}
    try:
        deadline = time.monotonic() + 180
        while not ready.exists() and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), (tmp_path / "pytest.log").read_text()
        started = json.loads(ready.read_text())
        run = started["run"]
        processes = process_table()
        theirs = {pid: processes[pid] for pid in descendants(processes, {killed.pid}) - {killed.pid}}
        assert {started["service"], started["bare"]} <= set(theirs)
        assert started["service"] in carrying(run) and started["bare"] not in carrying(run)
        assert len(theirs) >= 4, theirs  # the supervisor, gunicorn's master and worker, the bare one, ...

        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        deadline = time.monotonic() + 10
        while (alive(theirs) or carrying(run)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(theirs) and not carrying(run), (alive(theirs), carrying(run))
        assert other.poll() is None, "another run's process was stopped"
        assert "reaper: the test run" in (tmp_path / "pytest.log").read_text()
    finally:
        other.kill()
        other.wait()
        for pid in alive(theirs):  # where the reaper failed: not left to the next test
            os.kill(pid, signal.SIGKILL)
        if killed.poll() is None:
            killed.kill()
            killed.wait()
