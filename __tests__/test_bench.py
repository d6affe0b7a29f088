"""python -m bench.run: the benchmark runs end to end (a smoke test, not a measurement)."""

import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

DEBIAN_LIB = Path("/usr/lib/darknet/libdarknet.so")


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


@pytest.mark.e2e
def test_the_gpu_check_dry_runs_on_the_cpu(model_dir):
    """scripts/gpu_check.sh's measuring half, on Debian's CPU darknet: it cannot be run on
    a GPU here, so at least its counts table, throughput tables and verdict are."""
    if not DEBIAN_LIB.is_file():
        pytest.skip("Debian's darknet package is not installed (sudo apt-get install darknet)")
    command = [sys.executable, "-m", "bench.gpu_check", "--engine", f"darknet:{DEBIAN_LIB}", "--device", "cpu"]
    command += ["--batches", "1,2", "--clients", "1", "--duration", "0.5", "--skip-production"]
    result = subprocess.run(
        [*command, "--model-dir", str(model_dir)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Machine: ")
    assert sum(line.endswith("| same |") for line in lines) == len(list((ROOT / "data").glob("*.jpg")))
    assert sum(line.startswith("### darknet on cpu, MAX_BATCH=") for line in lines) == 2
    assert lines[-1] == "- every engine counted as the CPU"
