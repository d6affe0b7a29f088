"""python -m bench.run: the benchmark runs end to end (a smoke test, not a measurement)."""

import subprocess
import sys

import pytest
from support import ROOT


@pytest.mark.e2e
def test_the_quick_benchmark_prints_every_table(model_dir):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--skip-production", "--model-dir", str(model_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Machine: ")
    assert any("| median ms |" in line for line in lines) and any("| requests/s |" in line for line in lines)
    assert "(instruction-set class " in lines[0]
    for engine in ("opencv", "onnxruntime fp32", "HTTP /invocations (onnxruntime fp32)"):
        assert any(line.startswith(f"| {engine} |") for line in lines), engine
    # int8 has a row where its calibration passed on this CPU, else a line that says why not.
    assert any(line.startswith("| onnxruntime int8 |") for line in lines) or any(
        line.startswith("- onnxruntime int8: not timed: ") for line in lines
    )
    assert any(line.startswith("- int8: ") and " scheme " in line for line in lines)
    for clients in (1, 8, 32, 64):
        assert any(line.startswith(f"| {clients} |") for line in lines), f"{clients} clients"
