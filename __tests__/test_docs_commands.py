"""The commands README.md and docs/ give run as written. A fenced block marked
```` ```sh runnable ```` is run by bash against the live service, from a folder that has
the checkout's data/, aimodel/ and .venv/ (so what a command writes lands there,
not in the checkout); `localhost:8080` becomes the live service's address."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from support import ROOT, starts_processes

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"^```sh runnable\n(.*?)^```", re.DOTALL | re.MULTILINE)


def runnable_blocks() -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(ROOT)}#{number}", block)
        for page in PAGES
        for number, block in enumerate(RUNNABLE.findall(page.read_text()), 1)
    ]


def test_the_first_screen_has_runnable_commands_and_stays_short():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert [name for name, _ in runnable_blocks() if name.startswith("README.md")]
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


@pytest.mark.e2e
@pytest.mark.parametrize(("where", "block"), runnable_blocks(), ids=[name for name, _ in runnable_blocks()])
def test_a_runnable_block_runs_as_written(where, block, live_server, tmp_path):
    starts_processes(f"the commands of {where}")
    for shared in ("data", "aimodel", ".venv"):
        (tmp_path / shared).symlink_to(ROOT / shared)
    script = block.replace("localhost:8080", f"127.0.0.1:{live_server.port}")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # `python -m app` from the checkout
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{where}:\n{script}\n{done.stderr[-3000:]}"
    photos_posted = script.count("/invocations")
    assert done.stdout.count('"stat"') == photos_posted, done.stdout[:2000]
    if "> counts.csv" in script:
        assert Path(tmp_path / "counts.csv").read_text().startswith("file,")
