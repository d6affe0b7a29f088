"""python -m bench.run: the benchmark runs end to end (a smoke test, not a measurement)."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, copy_model, require_tool

DEBIAN_LIB = Path("/usr/lib/darknet/libdarknet.so")


@pytest.mark.e2e
def test_the_quick_benchmark_prints_every_table(model_dir, tmp_path):
    # A copy: the benchmark calibrates the model it is given, and a calibration report
    # beside the demo model would change what PRECISION=auto serves to the other tests.
    copy_model(model_dir, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--skip-production", "--model-dir", str(tmp_path)],
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
    require_tool(DEBIAN_LIB.is_file(), f"Debian's darknet is not installed (no {DEBIAN_LIB})", "darknet")
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


@pytest.mark.e2e
def test_the_cpu_engines_benchmark_times_every_engine_in_turns_against_onnxruntime_fp32():
    # A small network and photo: the production run (YOLOv3 832, 3400x2600) takes minutes.
    result = subprocess.run(
        [sys.executable, "-m", "bench.cpu_engines", "--network", "128", "--size", "400x300", "--rounds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Statistics collection" not in result.stdout  # NNCF's progress goes to stderr
    assert any("(class `" in line and "bf16 instructions: " in line for line in lines)
    assert any(line.startswith("| onnxruntime fp32 |") and "| 1.00 | yes |" in line for line in lines)
    for engine in ("openvino fp32", "onnxruntime int8 (u8s8-reduced)", "openvino int8 (NNCF)"):
        assert any(line.startswith(f"| {engine} |") for line in lines), engine
    # bf16 has a row where the CPU computes it, else a line that says why not.
    assert any(line.startswith(("| openvino bf16 |", "- openvino bf16: not timed: ")) for line in lines)
    # Alternating: the second round runs the engines in reverse order.
    rounds = [line for line in result.stderr.splitlines() if line.startswith("  round ")]
    assert rounds[0].split(":")[1].split()[:2] == rounds[-1].split(":")[1].split()[:2]


@pytest.mark.parametrize(
    "module",
    sorted(
        f"{path.parent.name}.{path.stem}"
        for folder in ("bench", "synthetic")
        for path in (ROOT / folder).glob("*.py")
        if path.stem != "__init__"
    ),
)
def test_every_benchmark_and_maker_imports(module):
    """Each benchmark is run by hand, rarely: a name moved elsewhere must fail here, not
    on the day someone measures."""
    importlib.import_module(module)


@pytest.mark.e2e
def test_the_overhead_benchmark_says_where_the_request_time_goes(model_dir):
    result = subprocess.run(
        [sys.executable, "-m", "bench.overhead", "--model-dir", str(model_dir), "--runs", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| the Flask app, no HTTP" in result.stdout and "| HTTP /invocations, gunicorn alone" in result.stdout
    assert "- whole request / bare session.run: " in result.stdout
    assert (
        "the service's own pipeline around the forward pass" in result.stdout and "HTTP (client, nginx" in result.stdout
    )
