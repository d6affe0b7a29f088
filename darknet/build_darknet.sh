#!/usr/bin/env bash
# Build libdarknet.so from AlexeyAB/darknet at the pinned commit, or from a darknet
# source directory: the recipe the Dockerfile runs, runnable outside Docker too.
#
#   darknet/build_darknet.sh --variant gpu|cpu --out DIR [--source DIR]
#   darknet/build_darknet.sh --variant gpu|cpu --print-make-flags
#   darknet/build_darknet.sh --print-repo
#
# Without --source (or with an empty directory: the Dockerfile's default) the pinned
# commit is cloned. The binding in darknet/structs.py declares the `detection` struct of
# exactly this commit: change both together. A source of pjreddie's API (Debian's darknet
# source package, `apt-get source darknet`) builds too; the binding knows that one.
# DIR gets libdarknet.so, darknet-build.txt (which darknet, which commit, which flags:
# the service's /model reports it) and, when CUDA comes from the system's packages rather
# than /usr/local/cuda, lib/ with the CUDA libraries it needs.
set -euo pipefail

DARKNET_REPO=${DARKNET_REPO:-https://github.com/AlexeyAB/darknet.git}
DARKNET_COMMIT=59596d7880f6504768df41d6daa586f5cb2b932f
# Volta (V100), Turing (T4), Ampere (A100, A10/RTX 30), Ada (L4/L40/RTX 40), Hopper (H100);
# DARKNET_CUDA_ARCHS="90" builds for one (scripts/gpu_check.sh: its GPU's, in a minute).
read -ra CUDA_ARCHS <<<"${DARKNET_CUDA_ARCHS:-70 75 80 86 89 90}"

usage() {
  sed -n '5,7p' "$0" >&2
  exit 2
}

# make_flags VARIANT FLAVOUR: the flags for AlexeyAB's Makefile (the pinned commit, on a
# base with cuDNN) or pjreddie's (which has no LIBSO, AVX or CUDNN_HALF).
make_flags() {
  local variant=$1 flavour=${2:-alexeyab}
  local flags=(OPENMP=1 OPENCV=0)
  [ "$flavour" = alexeyab ] && flags+=(LIBSO=1 AVX=1)
  if [ "$variant" = gpu ]; then
    local arch="" cc
    for cc in "${CUDA_ARCHS[@]}"; do
      arch+=" -gencode arch=compute_${cc},code=[sm_${cc},compute_${cc}]"
    done
    flags+=(GPU=1 CUDNN=1 "ARCH=${arch# }")
    [ "$flavour" = alexeyab ] && flags+=(CUDNN_HALF=1)
  else
    flags+=(GPU=0 CUDNN=0)
    [ "$flavour" = alexeyab ] && flags+=(CUDNN_HALF=0)
  fi
  printf '%s\n' "${flags[@]}"
}

# What the source is, in one line: the repository and commit, or Debian's package.
describe_source() {
  local source=$1 flavour=$2 version
  if [ -f "$source/debian/changelog" ]; then
    version=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$source/debian/changelog")
    # Debian's version names the upstream commit: 0.0.0+git20180914.61c9d02e-2.
    local commit=${version##*.}
    echo "$flavour/darknet ${commit%%-*} (Debian source package darknet $version)"
  elif git -C "$source" rev-parse HEAD >/dev/null 2>&1; then
    echo "$flavour/darknet $(git -C "$source" rev-parse HEAD) ($(git -C "$source" remote get-url origin 2>/dev/null || echo "$source"))"
  else
    echo "$flavour/darknet from $source (commit unknown)"
  fi
}

# pjreddie's layers (maxpool, yolo, route...) take GPU memory whatever gpu_index says, and
# abort where there is no GPU: with gpu_index -1 (the binding's CPU mode) they get none,
# so its CUDA build also runs on the CPU, as AlexeyAB's does.
guard_no_gpu() {
  local cuda_c=$1/src/cuda.c mark="build_darknet.sh: gpu_index -1, no GPU memory"
  grep -q "$mark" "$cuda_c" ||
    sed -i "/^\(float\|int\) \*cuda_make_\(int_\)\{0,1\}array(\(float\|int\) \*x, size_t n)\$/{n;s|\$|\n    if (gpu_index < 0) return 0; /* $mark */|}" "$cuda_c"
  [ "$(grep -c "$mark" "$cuda_c")" = 2 ] || { echo "$cuda_c: cuda_make_array is not where it was" >&2; exit 1; }
}

has_cudnn() {
  local dir
  for dir in /usr/local/cuda/include /usr/include /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu; do
    [ -f "$dir/cudnn.h" ] && return 0
  done
  return 1
}

variant="" out="" source="" print_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --variant) variant=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    --source) source=${2:-}; shift 2 ;;
    --print-make-flags) print_only=1; shift ;;
    --print-repo) echo "$DARKNET_REPO"; exit 0 ;;
    *) usage ;;
  esac
done
case $variant in gpu | cpu) ;; *) usage ;; esac
if [ "$print_only" = 1 ]; then
  make_flags "$variant"
  exit 0
fi
[ -n "$out" ] || usage

if [ -z "$source" ] || [ -z "$(ls -A "$source" 2>/dev/null)" ]; then
  echo "darknet: cloning $DARKNET_REPO at the pinned commit $DARKNET_COMMIT"
  source=$(mktemp -d)
  git clone --quiet "$DARKNET_REPO" "$source"
  git -C "$source" checkout --quiet "$DARKNET_COMMIT"
fi
[ -f "$source/Makefile" ] || { echo "$source: no darknet Makefile there" >&2; exit 1; }
flavour=pjreddie
grep -q '^LIBSO=' "$source/Makefile" && flavour=alexeyab
mapfile -t flags < <(make_flags "$variant" "$flavour")
[ "$flavour" = pjreddie ] && [ "$variant" = gpu ] && guard_no_gpu "$source"
if [ "$variant" = gpu ] && ! has_cudnn; then
  echo "darknet: no cuDNN on this base (Debian's CUDA toolkit has none): building with CUDNN=0"
  flags=("${flags[@]/#CUDNN=1/CUDNN=0}")
  flags=("${flags[@]/#CUDNN_HALF=1/CUDNN_HALF=0}")
fi

# The CUDA driver (libcuda.so) is only on the machine that runs the image: link against
# the toolkit's stub, and only where darknet calls it (--as-needed; pjreddie never does),
# so that a CUDA build still loads, and runs on the CPU, where there is no driver.
export LIBRARY_PATH="/usr/local/cuda/lib64/stubs:/usr/lib/x86_64-linux-gnu/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
mkdir -p "$source/obj" # pjreddie's Makefile makes it only for `all`
make -C "$source" -j"$(nproc)" "${flags[@]}" CC="gcc -Wl,--as-needed" CPP="g++ -std=c++11 -Wl,--as-needed" libdarknet.so
mkdir -p "$out"
install -m 0755 "$source/libdarknet.so" "$out/libdarknet.so"

switches=""
for flag in "${flags[@]}"; do
  case $flag in GPU=* | CUDNN=* | CUDNN_HALF=* | OPENMP=* | AVX=*) switches+=" $flag" ;; esac
done
built="$(describe_source "$source" "$flavour");$switches"
if [ "$variant" = gpu ]; then
  built+=", CUDA $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  # CUDA libraries of the system's packages (Debian's toolkit) go with the library;
  # nvidia/cuda's runtime image has its own in /usr/local/cuda.
  mkdir -p "$out/lib"
  ldd "$out/libdarknet.so" |
    awk '$3 ~ /\/lib(cudart|cublas|cublasLt|curand|cudnn)[^\/]*$/ && $3 !~ /^\/usr\/local\/cuda/ {print $3}' |
    xargs -r cp -L -t "$out/lib"
  rmdir "$out/lib" 2>/dev/null || true
fi
echo "$built" >"$out/darknet-build.txt"
echo "built $out/libdarknet.so: $built"
