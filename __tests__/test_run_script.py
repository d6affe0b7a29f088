"""run.sh's set-up as operators meet it: a checkout the service's user cannot write, a
.venv it may not use or whose Python is gone, apt's lock held by another apt. The real
scripts/ensure_venv.sh, on an empty lock (nothing to download)."""

import fcntl
import getpass
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from support import ROOT

AS_ROOT = os.geteuid() == 0
pytestmark = pytest.mark.e2e  # every test runs bash and the real helper


def checkout(tmp_path: Path) -> Path:
    """A folder with run.sh's helper and nothing to install."""
    folder = tmp_path / "checkout"
    (folder / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "ensure_venv.sh", folder / "scripts")
    (folder / "locks").mkdir()
    (folder / "locks" / "requirements.txt").write_text("")
    return folder


def ensure_venv(folder: Path, as_nobody: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    command = ["bash", "-c", "source scripts/ensure_venv.sh && ensure_venv locks/requirements.txt"]
    if as_nobody:  # the service's own user, not the one who made the checkout
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **(env or {})}
    )


needs_root = pytest.mark.skipif(not AS_ROOT, reason="runs the helper as another user (setpriv)")


@pytest.fixture
def tmp_path():
    """pytest's own is private to its user (0700 above it): one that another user reaches."""
    folder = Path(tempfile.mkdtemp(prefix="run-script-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@needs_root
def test_a_checkout_the_user_cannot_write_says_so_not_install_python3_venv(tmp_path):
    folder = checkout(tmp_path)
    result = ensure_venv(folder, as_nobody=True)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"cannot create .venv in {folder}: not writable by nobody (chown -R nobody {folder}, or run as its owner)"
    )


@needs_root
def test_a_venv_the_user_may_not_use_is_kept_and_the_reason_said(tmp_path):
    folder = checkout(tmp_path)
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(folder / ".venv")], check=True, timeout=120)
    (folder / ".venv").chmod(0o700)  # made by root, as a first `sudo ./run.sh` makes it
    folder.chmod(0o777)
    result = ensure_venv(folder, as_nobody=True)
    assert result.returncode == 1
    assert result.stderr.startswith(f"cannot use .venv in {folder}: its interpreter cannot be run by nobody (")
    assert "owned by root, mode 700: chown -R nobody" in result.stderr
    assert (folder / ".venv" / "bin" / "python").exists()  # never deleted for a permission


def test_a_venv_whose_python_is_gone_is_rebuilt_after_saying_why(tmp_path):
    folder = checkout(tmp_path)
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(folder / ".venv")], check=True, timeout=120)
    python = folder / ".venv" / "bin" / "python"
    python.unlink()
    python.symlink_to("/usr/bin/python3.1")  # the Python it was made with, since upgraded away
    result = ensure_venv(folder)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        f"rebuilding .venv in {folder}: its interpreter cannot be run (it links to /usr/bin/python3.1, which is gone)"
    )
    assert subprocess.run([str(python), "-c", ""], check=False).returncode == 0


@needs_root
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt-get")
def test_apt_waits_for_another_apt_a_bounded_time(tmp_path):
    """unattended-upgrades holding apt's locks: apt_install waits APT_LOCK_WAIT_S, then
    fails (run.sh then starts without the front), instead of failing at once."""
    held = ("/var/lib/apt/lists/lock", "/var/lib/dpkg/lock-frontend")
    locks = [os.open(path, os.O_RDWR | os.O_CREAT) for path in held]
    try:
        for lock in locks:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        result = subprocess.run(
            ["bash", "-c", "source scripts/ensure_venv.sh && apt_install nginx"],
            cwd=ROOT,
            env={**os.environ, "APT_LOCK_WAIT_S": "3"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        waited = time.monotonic() - started
    finally:
        for lock in locks:
            os.close(lock)
    assert result.returncode != 0
    assert "lock" in result.stderr
    assert 2 <= waited < 30  # SECONDS counts whole seconds


def test_a_venv_whose_python_fails_for_another_reason_is_kept(tmp_path):
    """Only a venv whose interpreter is gone is rebuilt: one that fails otherwise (a
    broken install, a venv shared with others and being updated) is said and kept."""
    folder = checkout(tmp_path)
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(folder / ".venv")], check=True, timeout=120)
    python = folder / ".venv" / "bin" / "python"
    python.unlink()
    python.write_text("#!/bin/sh\necho 'Fatal Python error: init_fs_encoding' >&2\nexit 1\n")
    python.chmod(0o755)
    result = ensure_venv(folder)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"cannot use .venv in {folder}: its interpreter cannot be run by {getpass.getuser()} "
        "(Fatal Python error: init_fs_encoding)"
    )
    assert python.exists()
