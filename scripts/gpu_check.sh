#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and its driver, maybe no Docker, and
# nothing outside it but the package registries. In under 8 minutes:
#   1. the GPU, from nvidia-smi;
#   2. darknet built GPU=1 for this GPU's architecture where nvcc exists: the commit
#      pinned in darknet/build_darknet.sh where GitHub answers, else --darknet-source DIR,
#      else the distribution's darknet source package (apt-get source darknet);
#   3. onnxruntime-gpu in a venv of its own (.venv-gpu), where pip can install it, meanwhile;
#   4. python -m bench.gpu_check for each: the sample photos counted on the GPU against
#      OpenCV on the CPU, then requests/s for MAX_BATCH 1, 4, 8 at 1, 8 and 32 clients,
#      and the production-size model (YOLOv3 at 832, bench/architectures).
#
#   scripts/gpu_check.sh [--darknet-source DIR] [--libdarknet PATH] [--duration S] [--dry-run]
#
# --libdarknet PATH skips the build (a CUDA libdarknet.so of your own, the GPU image's).
# --dry-run does it all on the CPU, briefly (no nvidia-smi, darknet built GPU=0, no
# onnxruntime-gpu, no production model): what a machine without a GPU can check of it.
# Exits 1 when an engine fails to start or counts differently from the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=.gpu-check # git-ignored: darknet's build, the fetched source, logs
mkdir -p "$WORK"
started=$(date +%s)
say() { echo "gpu_check [$(($(date +%s) - started)) s]: $*" >&2; }

usage() {
  sed -n '13p' "$0" >&2
  exit 2
}

darknet_source="" libdarknet="" duration=3 dry_run=0
while [ $# -gt 0 ]; do
  case $1 in
    --darknet-source) darknet_source=${2:-}; shift 2 ;;
    --libdarknet) libdarknet=${2:-}; shift 2 ;;
    --duration) duration=${2:-}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    *) usage ;;
  esac
done

as_root_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    say "needs $* (sudo apt-get install $*)"
    return 1
  fi
}

# The distribution's darknet source package, with a private apt configuration (the
# machine's own sources are left alone). Prints the unpacked directory.
distribution_darknet_source() {
  local apt_dir=$PWD/$WORK/apt
  # shellcheck source=/dev/null
  . /etc/os-release
  rm -rf "$apt_dir" && mkdir -p "$apt_dir/lists/partial" "$WORK/source"
  case ${ID:-} in
    debian) echo "deb-src http://deb.debian.org/debian $VERSION_CODENAME main" >"$apt_dir/sources.list" ;;
    ubuntu) echo "deb-src http://archive.ubuntu.com/ubuntu $VERSION_CODENAME universe" >"$apt_dir/sources.list" ;;
    *) say "no darknet source: pass --darknet-source DIR"; return 1 ;;
  esac
  command -v dpkg-source >/dev/null || as_root_install dpkg-dev >&2
  local apt=(apt-get -qq -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists")
  "${apt[@]}" update >&2
  (cd "$WORK/source" && "${apt[@]}" source darknet >/dev/null 2>&1)
  find "$PWD/$WORK/source" -mindepth 2 -maxdepth 2 -name Makefile -printf '%h\n' | head -n1
}

# 1. the machine
# shellcheck source=scripts/ensure_venv.sh
source scripts/ensure_venv.sh
ensure_venv locks/requirements.txt
[ -n "$(ls aimodel/*.weights 2>/dev/null)" ] || "$VENV/bin/python" scripts/fetch_demo_model.py aimodel
if [ "$dry_run" = 1 ]; then
  variant=cpu device=cpu duration=1
  bench_args=(--batches "1,4" --clients "1,8" --skip-production)
  say "dry run: on the CPU, darknet built GPU=0, no onnxruntime-gpu, no production model"
else
  variant=gpu device=cuda
  bench_args=()
  command -v nvidia-smi >/dev/null || { say "no nvidia-smi: no NVIDIA driver on this machine"; exit 1; }
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')
fi
engines=()

# 3, started first: onnxruntime on the GPU, in a venv of its own with onnxruntime-gpu in
# the place of onnxruntime, installed while darknet builds and runs (minutes of the 8).
gpu_venv_job=""
if [ "$variant" = gpu ]; then
  say "installing onnxruntime-gpu in .venv-gpu, in the background"
  (VENV=.venv-gpu ensure_venv locks/requirements.txt &&
    .venv-gpu/bin/pip uninstall --quiet --yes onnxruntime &&
    .venv-gpu/bin/pip install --quiet --require-hashes -r locks/requirements-gpu.txt) >"$WORK/venv-gpu.log" 2>&1 &
  gpu_venv_job=$!
fi

# 2. darknet on the GPU
if [ -z "$libdarknet" ]; then
  nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
  if [ "$variant" = gpu ] && [ -z "$nvcc" ]; then
    say "no nvcc on this machine: darknet on CUDA is not checked (install the CUDA toolkit, or pass --libdarknet)"
  else
    [ -z "$nvcc" ] || PATH="$(dirname "$nvcc"):$PATH"
    source_args=()
    if [ -n "$darknet_source" ]; then
      source_args=(--source "$darknet_source")
    elif ! timeout 20 git ls-remote --exit-code "$(darknet/build_darknet.sh --print-repo)" HEAD >/dev/null 2>&1; then
      say "GitHub cannot be reached: the distribution's darknet source package instead"
      source_args=(--source "$(distribution_darknet_source)")
    fi
    say "building darknet ($variant${arch:+, sm_$arch})"
    if DARKNET_CUDA_ARCHS=${arch:-} darknet/build_darknet.sh --variant "$variant" --out "$WORK/darknet" \
      "${source_args[@]}" >"$WORK/darknet-build.log" 2>&1; then
      libdarknet=$PWD/$WORK/darknet/libdarknet.so
      say "built: $(cat "$WORK/darknet/darknet-build.txt")"
    else
      say "the darknet build failed; its log's end:"
      tail -n 20 "$WORK/darknet-build.log" >&2
    fi
  fi
fi
[ -z "$libdarknet" ] || engines+=(--engine "darknet:$libdarknet")

# 4. counts and throughput
status=0
if [ ${#engines[@]} -gt 0 ]; then
  say "darknet: counts and throughput"
  "$VENV/bin/python" -m bench.gpu_check "${engines[@]}" --device "$device" --duration "$duration" "${bench_args[@]}" ||
    status=1
fi
gpu_venv=""
if [ -n "$gpu_venv_job" ]; then
  if wait "$gpu_venv_job"; then
    gpu_venv=.venv-gpu
  else
    say "onnxruntime-gpu cannot be installed here: onnxruntime on CUDA is not checked; the log's end:"
    tail -n 5 "$WORK/venv-gpu.log" >&2
  fi
fi
if [ -n "$gpu_venv" ]; then
  say "onnxruntime-gpu: counts and throughput"
  # The CUDA and cuDNN libraries came as wheels: where onnxruntime's CUDA provider finds them.
  nvidia_libs=$("$gpu_venv/bin/python" -c \
    'import glob, site; print(":".join(sorted(glob.glob(site.getsitepackages()[0] + "/nvidia/*/lib"))))')
  LD_LIBRARY_PATH="$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$gpu_venv/bin/python" -m bench.gpu_check \
    --engine onnxruntime --device cuda --duration "$duration" "${bench_args[@]}" || status=1
elif [ "$dry_run" = 1 ]; then
  "$VENV/bin/python" -m bench.gpu_check --engine onnxruntime --device cpu --duration "$duration" "${bench_args[@]}" ||
    status=1
fi
[ ${#engines[@]} -gt 0 ] || [ -n "$gpu_venv" ] || [ "$dry_run" = 1 ] || { say "no GPU engine could be checked"; status=1; }
say "done (exit $status)"
exit "$status"
