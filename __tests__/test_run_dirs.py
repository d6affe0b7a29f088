"""The supervisor's run directories (sockets, nginx's temp files): a later start removes
those of runs killed outright, and never one whose supervisor still lives, even where
its pid means nothing (a PID namespace of its own, a container sharing /tmp)."""

import fcntl
import os
import subprocess
import sys
import time

import pytest

from app.serve import supervisor


@pytest.fixture
def temp(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor.tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.e2e  # a supervisor in another process
def test_a_run_whose_supervisor_lives_elsewhere_is_kept_and_a_dead_ones_removed(temp):
    alive, lock = supervisor.claim_run_dir()
    # Another supervisor, held by a process that then dies: the kernel drops its lock.
    dead = subprocess.run(
        [sys.executable, "-c", "from app.serve import supervisor; print(supervisor.claim_run_dir()[0])"],
        env={**os.environ, "TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        check=True,
        cwd=supervisor.Path(supervisor.__file__).parents[2],
    ).stdout.strip()
    # A pid no process here has: how a run in another PID namespace looks from this one.
    elsewhere = temp / f"{supervisor.RUN_DIR_PREFIX}999999999-x"
    elsewhere.mkdir()
    held = os.open(elsewhere / supervisor.RUN_LOCK, os.O_CREAT | os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        supervisor.remove_stale_run_dirs()
        assert alive.exists() and elsewhere.exists()
        assert not supervisor.Path(dead).exists()
    finally:
        os.close(held)
        os.close(lock)


def test_a_directory_without_its_lock_yet_is_removed_only_once_old(temp):
    new = temp / f"{supervisor.RUN_DIR_PREFIX}1-new"
    old = temp / f"{supervisor.RUN_DIR_PREFIX}2-old"
    new.mkdir()
    old.mkdir()
    past = time.time() - supervisor.UNLOCKED_RUN_GRACE_S - 5
    os.utime(old, (past, past))
    supervisor.remove_stale_run_dirs()
    assert new.exists() and not old.exists()
