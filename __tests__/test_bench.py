"""python -m bench.run: the benchmark runs end to end (a smoke test, not a measurement)."""

import shutil
import subprocess
import sys

from support import ROOT


def test_the_quick_benchmark_prints_every_table(model_dir, tmp_path):
    # A copy: the benchmark calibrates the model it is given, and a calibration report
    # beside the demo model would change what PRECISION=auto serves to the other tests.
    for name in ("yolov3-tiny.cfg", "coco.names"):
        shutil.copy(model_dir / name, tmp_path / name)
    (tmp_path / "yolov3-tiny.weights").symlink_to(model_dir / "yolov3-tiny.weights")
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
