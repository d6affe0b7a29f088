"""The locks in locks/ and the ranges they are made from (requirements*.txt).

Each range file people edit has a lock of the same name in locks/, written by uv
(scripts/refresh_locks.sh): every package, direct or not, at one exact version per
Python version, with the hashes of its files, so `pip install --require-hashes -r
locks/X` installs the same bytes on every machine, whatever PyPI released since.

    python3 scripts/locks.py check           do the locks agree with the ranges? (exit 1 if not)
    python3 scripts/locks.py moved OLD NEW   what changed between two lock folders

Plain Python: `check` needs `packaging` (in every venv pip made), `moved` nothing.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"
# The order refresh_locks.sh writes them in, and what each is held to: the test lock is
# resolved first as a whole (the service, calibrate and test tools together), then the
# service's and calibrate's within it, so what is tested is what is served.
RANGES = (
    "requirements-test.txt",
    "requirements.txt",
    "requirements-calibrate.txt",
    "requirements-gpu.txt",
    "requirements-label-studio.txt",
    "requirements-locking.txt",
)
CONSTRAINED_BY = {
    "requirements.txt": "requirements-test.txt",
    "requirements-calibrate.txt": "requirements-test.txt",
    "requirements-gpu.txt": "requirements.txt",
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")
_VIA_RANGES = re.compile(r"^#\s+(?:via\s+)?-r\s+(\S+)$")


def normalized(name: str) -> str:
    """PEP 503: `Flask_Cors` and `flask-cors` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str  # '' where it holds on every Python
    hashes: int
    direct_from: tuple[str, ...]  # the range files that name it (uv's `# via -r FILE`)


def pins(lock: Path) -> list[Pin]:
    """The packages of a lock uv wrote, with their hashes and where each comes from."""
    found: list[Pin] = []
    current: dict | None = None

    def close() -> None:
        if current:
            found.append(Pin(**current))

    for raw in lock.read_text().splitlines():
        line = raw.strip()
        if match := _PIN.match(line):
            close()
            name, version, marker = match.groups()
            current = {"name": normalized(name), "version": version, "marker": marker or "", "hashes": 0}
            current["direct_from"] = ()
        elif current and line.startswith("--hash="):
            current["hashes"] += 1
        elif current and (via := _VIA_RANGES.match(line)):
            current["direct_from"] = (*current["direct_from"], Path(via.group(1)).name)
    close()
    return found


def requirements(ranges: Path) -> list[str]:
    """The requirement lines of a range file, those it reads with -r included."""
    lines: list[str] = []
    for raw in ranges.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            lines += requirements(ranges.parent / line.split(maxsplit=1)[1])
        elif line.startswith("-"):
            raise ValueError(f"{ranges.name}: option {line!r} is not supported in a range file")
        else:
            lines.append(line)
    return lines


def disagreements(root: Path = ROOT) -> list[str]:
    """Why the locks do not match the ranges, one line each: empty when they agree."""
    from packaging.requirements import Requirement

    problems: list[str] = []
    for name in RANGES:
        ranges, lock = root / name, root / "locks" / name
        if not lock.is_file():
            problems.append(f"locks/{name} is missing")
            continue
        locked = pins(lock)
        by_name: dict[str, list[Pin]] = {}
        for pin in locked:
            by_name.setdefault(pin.name, []).append(pin)
            if pin.hashes == 0:
                problems.append(f"locks/{name}: {pin.name}=={pin.version} has no hash")
        wanted = {}
        for line in requirements(ranges):
            requirement = Requirement(line)
            wanted[normalized(requirement.name)] = requirement
        for package, requirement in wanted.items():
            if package not in by_name:
                problems.append(f"locks/{name}: {requirement} is in {name} but not in the lock")
            for pin in by_name.get(package, []):
                if not requirement.specifier.contains(pin.version, prereleases=True):
                    problems.append(f"locks/{name}: {pin.name}=={pin.version} is outside {name}'s {requirement}")
        own_files = {name, *(Path(line).name for line in _included(ranges))}
        for pin in locked:
            if set(pin.direct_from) & own_files and pin.name not in wanted:
                problems.append(f"locks/{name}: {pin.name} is no longer in {name} but still locked as asked for there")
    return problems


def _included(ranges: Path) -> list[str]:
    names = []
    for raw in ranges.read_text().splitlines():
        parts = raw.split()
        if parts[:1] in (["-r"], ["--requirement"]):
            names.append(parts[1])
            names += _included(ranges.parent / parts[1])
    return names


def versions(folder: Path) -> dict[tuple[str, str], set[str]]:
    """(lock, package) -> its versions, over every lock in a folder."""
    table: dict[tuple[str, str], set[str]] = {}
    for lock in sorted(folder.glob("*.txt")):
        for pin in pins(lock):
            table.setdefault((lock.name, pin.name), set()).add(pin.version)
    return table


def moved(old: Path, new: Path) -> list[str]:
    before, after = versions(old), versions(new)
    new_locks = {lock for lock, _ in after} - {lock for lock, _ in before}
    lines = [f"{lock}: new, {sum(1 for name, _ in after if name == lock)} packages" for lock in sorted(new_locks)]
    for lock, package in sorted(before.keys() | after.keys()):
        if lock in new_locks:
            continue
        was = ", ".join(sorted(before.get((lock, package), ()))) or "-"
        now = ", ".join(sorted(after.get((lock, package), ()))) or "-"
        if was != now:
            lines.append(f"{lock}: {package} {was} -> {now}")
    return lines


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"] and len(argv) == 1:
        problems = disagreements()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("the locks do not match the ranges: run scripts/refresh_locks.sh", file=sys.stderr)
        return 1 if problems else 0
    if argv[:1] == ["moved"] and len(argv) == 3:
        lines = moved(Path(argv[1]), Path(argv[2]))
        print("\n".join(lines) if lines else "nothing moved")
        return 0
    print(__doc__.split("\n\n")[2], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
