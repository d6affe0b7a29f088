#!/usr/bin/env bash
# Build libdarknet.so from AlexeyAB/darknet at the pinned commit: the recipe the
# Dockerfile runs, runnable outside Docker too.
#
#   darknet/build_darknet.sh --variant gpu|cpu --out DIR [--source DIR]
#   darknet/build_darknet.sh --variant gpu|cpu --print-make-flags
#
# Without --source the pinned commit is cloned. The binding in darknet/structs.py
# declares the `detection` struct of exactly this commit: change both together.
set -euo pipefail

DARKNET_REPO=${DARKNET_REPO:-https://github.com/AlexeyAB/darknet.git}
DARKNET_COMMIT=59596d7880f6504768df41d6daa586f5cb2b932f
# Volta (V100), Turing (T4), Ampere (A100, A10/RTX 30), Ada (L4/L40/RTX 40), Hopper (H100).
CUDA_ARCHS=(70 75 80 86 89 90)

usage() {
  sed -n '5,7p' "$0" >&2
  exit 2
}

make_flags() {
  local variant=$1
  local flags=(LIBSO=1 AVX=1 OPENMP=1 OPENCV=0)
  if [ "$variant" = gpu ]; then
    local arch="" cc
    for cc in "${CUDA_ARCHS[@]}"; do
      arch+=" -gencode arch=compute_${cc},code=[sm_${cc},compute_${cc}]"
    done
    flags+=(GPU=1 CUDNN=1 CUDNN_HALF=1 "ARCH=${arch# }")
  else
    flags+=(GPU=0 CUDNN=0 CUDNN_HALF=0)
  fi
  printf '%s\n' "${flags[@]}"
}

variant="" out="" source="" print_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --variant) variant=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    --source) source=${2:-}; shift 2 ;;
    --print-make-flags) print_only=1; shift ;;
    *) usage ;;
  esac
done
case $variant in gpu | cpu) ;; *) usage ;; esac
mapfile -t flags < <(make_flags "$variant")
if [ "$print_only" = 1 ]; then
  printf '%s\n' "${flags[@]}"
  exit 0
fi
[ -n "$out" ] || usage

if [ -z "$source" ]; then
  source=$(mktemp -d)
  git clone --quiet "$DARKNET_REPO" "$source"
  git -C "$source" checkout --quiet "$DARKNET_COMMIT"
fi
# The CUDA driver (libcuda.so) is only on the machine that runs the image; link
# against the toolkit's stub.
export LIBRARY_PATH="/usr/local/cuda/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
make -C "$source" -j"$(nproc)" "${flags[@]}" libdarknet.so
mkdir -p "$out"
install -m 0755 "$source/libdarknet.so" "$out/libdarknet.so"
echo "built $out/libdarknet.so ($variant, darknet $(git -C "$source" rev-parse --short HEAD 2>/dev/null || echo unknown))"
