"""A half that is there but does not answer (issue 33, round 4, row 9): a SIGSTOPped
nginx or gunicorn worker held every connection it had accepted, /ping answered 0 of 4,
nothing was logged, and gunicorn replaced its worker only after 123 s (its timeout).
The supervisor probes each half through its own door (app/serve/watchdog.py), says in
the log when one stops answering, and kills a process that stays stopped: its master
starts another."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from front_clients import nginx_processes
from support import RunningService, needs_tool, started, wait_until, worker_pids

from app.serve.front import nginx_binary
from app.serve.watchdog import process_state, processes_in_group

pytestmark = [
    pytest.mark.e2e,
    needs_tool(nginx_binary() is not None, "nginx is not installed", "nginx"),
]


@pytest.fixture
def service(model_dir, tmp_path):
    with started({"MODEL_DIR": str(model_dir), "WORKERS": "1"}, tmp_path / "log") as running:
        wait_until(lambda: "listens on" in running.output(), timeout=30)
        yield running


def nginx_workers(service: RunningService) -> list[int]:
    masters = [pid for pid in nginx_processes() if _parent(pid) == service.process.pid]
    return [pid for pid in nginx_processes() if _parent(pid) in masters]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def pings_ok(url: str) -> bool:
    try:
        return requests.get(f"{url}/ping", timeout=1).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


def stopped_until_served_again(service: RunningService, pid: int, replacements) -> float:
    """SIGSTOP `pid`; the seconds until /ping answers again from a process that replaced it."""
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        wait_until(lambda: process_state(pid) in ("T", ""), timeout=5)
        assert not pings_ok(service.url)  # the stopped worker holds the door
        wait_until(lambda: replacements() - {pid} and pings_ok(service.url), timeout=60)
        return time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_a_stopped_gunicorn_worker_is_said_and_replaced(service):
    (worker,) = worker_pids(service.process.pid)
    seconds = stopped_until_served_again(service, worker, lambda: worker_pids(service.process.pid))
    print(f"gunicorn worker SIGSTOPped: /ping answers again after {seconds:.1f} s")
    assert seconds < 30  # was 123 s: gunicorn's own timeout
    log = service.output()
    assert "gunicorn does not answer /ping (3 probes" in log and f"stopped (SIGSTOP): pid {worker}" in log
    assert f"gunicorn process {worker} has been stopped (SIGSTOP) for" in log
    wait_until(lambda: "gunicorn answers again" in service.output(), timeout=10)
    assert service.post_photo("dog.jpg").status_code == 200


def test_a_stopped_nginx_worker_is_said_and_replaced(service):
    (worker,) = nginx_workers(service)
    seconds = stopped_until_served_again(service, worker, lambda: set(nginx_workers(service)))
    print(f"nginx worker SIGSTOPped: /ping answers again after {seconds:.1f} s")
    assert seconds < 30
    log = service.output()
    assert "nginx does not answer /.front-health (3 probes" in log
    assert f"nginx process {worker} has been stopped (SIGSTOP) for" in log
    assert service.post_photo("dog.jpg").status_code == 200


def test_the_probes_are_quiet_while_all_is_well(service):
    time.sleep(7)  # three rounds of probes
    log = service.output()
    assert "does not answer" not in log and ".front-health" not in log
    assert all(process_state(pid) != "T" for pid in processes_in_group(service.process.pid))
