"""nginx's workers as an unprivileged user when the service runs as root (issue 33,
round 4, row 7: `./run.sh` as root ran them as root). They reach the socket through
the run directory's group (0710); the config, which holds the keys' patterns, stays
root's. Where no such user can reach the run directory (a private TMPDIR) they stay
root, and the log says so."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest
import requests
from front_clients import nginx_processes, run_dir
from support import RunningService, needs_tool, photo_bytes

from app.serve.front import WORKER_USERS, nginx_binary

pytestmark = [
    pytest.mark.e2e,
    needs_tool(nginx_binary() is not None, "nginx is not installed", "nginx"),
    pytest.mark.skipif(os.geteuid() != 0, reason="only root may run nginx's workers as another user"),
]


def workers_of(service: RunningService) -> dict[int, int]:
    """nginx's worker processes of this service: pid -> uid."""
    workers = {}
    for pid in nginx_processes():
        status = dict(
            line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line
        )
        parent = int(status["PPid"])
        if parent != service.process.pid and _parent(parent) == service.process.pid:
            workers[pid] = int(status["Uid"].split()[0])
    return workers


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_as_root_nginxs_workers_run_as_an_unprivileged_user(model_dir, tmp_path):
    service = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1", "API_KEYS": "k"}, tmp_path / "log")
    try:
        service.wait_ready()
        expected = next(pwd.getpwnam(name).pw_uid for name in WORKER_USERS if _exists(name))
        uids = set(workers_of(service).values())
        assert uids == {expected}, uids
        folder = run_dir(service.process.pid)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o710
        assert stat.S_IMODE((folder / "nginx.conf").stat().st_mode) == 0o600
        answer = requests.post(
            f"{service.url}/invocations",
            data=photo_bytes("dog.jpg"),
            headers={"X-API-Key": "k", "Content-Type": "image/jpeg"},
            timeout=60,
        )
        assert answer.status_code == 200 and answer.json()["stat"]["dog"] == 1
    finally:
        service.stop()


def test_a_private_tmpdir_keeps_them_root_and_says_so(model_dir, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    service = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1", "TMPDIR": str(private)}, tmp_path / "log")
    try:
        service.wait_ready()
        assert set(workers_of(service).values()) == {0}
        assert "nginx's workers run as root: no unprivileged user can reach" in service.output()
        assert service.post_photo("dog.jpg").status_code == 200
    finally:
        service.stop()


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
