import shutil
import subprocess
import sys

import pytest
from support import ROOT, starts_processes

SCRIPT = ROOT / "scripts" / "fetch_demo_model.py"


def run(destination):
    starts_processes("the demo model download")
    return subprocess.run([sys.executable, str(SCRIPT), str(destination)], capture_output=True, text=True, check=True)


@pytest.mark.e2e
def test_idempotent_and_repairs_a_damaged_file(model_dir, tmp_path):
    for name in ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names"):
        shutil.copy(model_dir / name, tmp_path / name)
    assert "already" in run(tmp_path).stdout  # nothing downloaded

    (tmp_path / "yolov3-tiny.weights").write_bytes(b"half a file")
    assert "ready" in run(tmp_path).stdout  # fetched again, verified
    assert (tmp_path / "yolov3-tiny.weights").stat().st_size == (model_dir / "yolov3-tiny.weights").stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco.names", "yolov3-tiny.cfg", "yolov3-tiny.weights"]
