"""The Docker image's recipe, checked without a Docker engine: lint, the pinned
darknet build, and the SageMaker start path (`serve`) run for real outside Docker."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, RunningService

BUILD_SCRIPT = ROOT / "darknet" / "build_darknet.sh"


def flags(variant: str) -> list[str]:
    command = [str(BUILD_SCRIPT), "--variant", variant, "--print-make-flags"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()


@pytest.mark.e2e  # runs build_darknet.sh
def test_gpu_build_flags_cover_volta_to_hopper():
    gpu = flags("gpu")
    assert {"GPU=1", "CUDNN=1", "CUDNN_HALF=1", "LIBSO=1", "AVX=1", "OPENMP=1"} <= set(gpu)
    (arch,) = [flag for flag in gpu if flag.startswith("ARCH=")]
    assert re.findall(r"sm_(\d+)", arch) == ["70", "75", "80", "86", "89", "90"]
    cpu = flags("cpu")
    assert {"GPU=0", "LIBSO=1", "AVX=1", "OPENMP=1"} <= set(cpu)


def test_binding_declares_the_struct_of_the_commit_the_image_builds():
    pinned = re.search(r"^DARKNET_COMMIT=([0-9a-f]{40})$", BUILD_SCRIPT.read_text(), re.M).group(1)
    assert pinned in (ROOT / "darknet" / "structs.py").read_text()


@pytest.mark.e2e  # runs hadolint (test.sh lints before pytest too)
def test_dockerfile_lints_clean():
    subprocess.run([_venv_bin("hadolint"), str(ROOT / "Dockerfile")], check=True)


@pytest.mark.e2e  # runs shellcheck (test.sh lints before pytest too)
def test_shell_scripts_lint_clean():
    scripts = [ROOT / "run.sh", ROOT / "test.sh", ROOT / ".ci" / "run", *ROOT.glob("scripts/*.sh")]
    scripts += ROOT.glob("darknet/*.sh")
    subprocess.run([_venv_bin("shellcheck"), *map(str, scripts)], check=True)


def test_image_carries_what_the_service_imports():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for needed in ("app/", "darknet/", "gunicorn.conf.py", "run.sh", "scripts/", "aimodel/", "locks/requirements.txt"):
        assert re.search(rf"^COPY .*{re.escape(needed)}", dockerfile, re.M), needed
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not {"app", "darknet", "scripts", "aimodel"} & set(ignored)
    assert 'CMD ["./run.sh"]' in dockerfile and "EXPOSE 8080" in dockerfile
    assert re.search(r"^USER \d+", dockerfile, re.M)  # not root


@pytest.mark.e2e
def test_serve_through_a_symlink_starts_the_service(tmp_path):
    # The image links /usr/local/bin/serve to run.sh; SageMaker runs `serve`.
    serve = tmp_path / "bin" / "serve"
    serve.parent.mkdir()
    serve.symlink_to(ROOT / "run.sh")
    service = RunningService({}, tmp_path / "service.log", command=[str(serve), "serve"])
    try:
        service.wait_ready()
    finally:
        assert service.stop() == 0, service.output()


def _venv_bin(name: str) -> str:
    """The linters come with the test requirements, next to this interpreter."""
    return str(Path(sys.executable).parent / name)
