"""Every install comes from a lock: exact versions and hashes (locks/, written from the
ranges in requirements*.txt by scripts/refresh_locks.sh), so a release on PyPI cannot
turn a new machine red. The locks must say what the ranges say, and pip must refuse a
file whose hash is not the locked one."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import ROOT, starts_processes

sys.path.insert(0, str(ROOT / "scripts"))
import locks  # scripts/ is not a package

INSTALLERS = [ROOT / "run.sh", ROOT / "test.sh", ROOT / "Dockerfile", *sorted((ROOT / "scripts").glob("*.sh"))]


def test_the_locks_say_what_the_ranges_say():
    assert locks.disagreements() == [], "run scripts/refresh_locks.sh"


def test_every_range_file_has_its_lock():
    range_files = {path.name for path in ROOT.glob("requirements*.txt")}
    assert range_files == set(locks.RANGES)
    assert {path.name for path in (ROOT / "locks").glob("*.txt")} == range_files


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The ranges and locks in a folder of the test's own, to be edited."""
    for name in locks.RANGES:
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "locks", tmp_path / "locks")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_range_the_locked_version_is_outside_of_is_named(project):
    edit(project / "requirements.txt", "numpy>=1.26,<3", "numpy>=1.26,<2")
    problems = locks.disagreements(project)
    assert any(line.startswith("locks/requirements.txt: numpy==") and "outside" in line for line in problems)
    # requirements-test.txt reads requirements.txt: its lock is out of date too.
    assert any(line.startswith("locks/requirements-test.txt: numpy==") for line in problems)


def test_a_package_added_to_a_range_but_not_locked_is_named(project):
    with (project / "requirements-label-studio.txt").open("a") as ranges:
        ranges.write("left-pad>=1\n")
    assert locks.disagreements(project) == [
        "locks/requirements-label-studio.txt: left-pad>=1 is in requirements-label-studio.txt but not in the lock"
    ]


def test_a_package_removed_from_a_range_but_still_locked_is_named(project):
    edit(project / "requirements.txt", "defusedxml>=0.7.1,<1\n", "")
    problems = locks.disagreements(project)
    said = "locks/requirements.txt: defusedxml is no longer in requirements.txt but still locked as asked for there"
    assert said in problems


def test_a_lock_line_without_a_hash_is_named(project):
    lock = project / "locks" / "requirements-locking.txt"
    lock.write_text(re.sub(r" \\\n\s+--hash=sha256:\w+", "", lock.read_text()))
    assert locks.disagreements(project)[0].startswith("locks/requirements-locking.txt: uv==")


def test_every_install_of_the_project_is_from_a_lock_with_hashes():
    for path in INSTALLERS:
        text = path.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if re.search(r"\bpip install\b", line) and "uninstall" not in line:
                assert "--require-hashes" in line, f"{path.name}: {line.strip()}"
                assert re.search(r'-r "?(locks/|\$lock)', line), f"{path.name}: {line.strip()}"
            for called in re.findall(r"\bensure_venv ([^\s;&)']+)", line):
                assert called.startswith(("locks/", "LOCK")), f"{path.name}: ensure_venv {called}"


def test_what_moved_is_said_per_lock_and_package(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    six = "six==1.17.0 \\\n    --hash=sha256:bb\n"
    (old / "requirements.txt").write_text("numpy==2.4.5 \\\n    --hash=sha256:aa\n" + six)
    (new / "requirements.txt").write_text("numpy==2.4.6 \\\n    --hash=sha256:cc\n" + six)
    (new / "requirements-gpu.txt").write_text(six)
    assert locks.moved(old, new) == ["requirements-gpu.txt: new, 1 packages", "requirements.txt: numpy 2.4.5 -> 2.4.6"]


def tiny_wheel(folder: Path) -> Path:
    """A real wheel of one module, made here: pip installs it from a folder, no index."""
    wheel = folder / "tinypkg-1.0-py3-none-any.whl"
    files = {
        "tinypkg.py": b"VALUE = 1\n",
        "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinypkg-1.0.dist-info/RECORD,,")
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("tinypkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def pip_install(lock: Path, wheels: Path, target: Path) -> subprocess.CompletedProcess:
    """pip as ensure_venv calls it, from a folder of wheels and no machine-wide pip config."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes"]
    command += ["--no-index", "--find-links", str(wheels), "--target", str(target), "-r", str(lock)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.e2e
def test_pip_installs_the_locked_file_and_refuses_one_whose_hash_changed(tmp_path):
    starts_processes("pip")
    wheel = tiny_wheel(tmp_path)
    good = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock = tmp_path / "lock.txt"

    lock.write_text(f"tinypkg==1.0 \\\n    --hash=sha256:{good}\n")
    installed = pip_install(lock, tmp_path, tmp_path / "ok")
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "ok" / "tinypkg.py").is_file()

    # The same name and version with other bytes: what a compromised or re-uploaded file is.
    lock.write_text(f"tinypkg==1.0 \\\n    --hash=sha256:{'0' * 64}\n")
    refused = pip_install(lock, tmp_path, tmp_path / "changed")
    assert refused.returncode != 0
    assert "DO NOT MATCH THE HASHES" in refused.stderr
    assert not (tmp_path / "changed" / "tinypkg.py").exists()

    lock.write_text("tinypkg==1.0\n")
    unhashed = pip_install(lock, tmp_path, tmp_path / "unhashed")
    assert unhashed.returncode != 0 and "hash" in unhashed.stderr.lower()
