#!/usr/bin/env bash
# The packages an image stage needs, on an Ubuntu or Debian base (the Dockerfile runs it):
#
#   darknet/install_deps.sh build gpu|cpu     compilers, git; CUDA where the base has none
#   darknet/install_deps.sh runtime gpu|cpu   Python, nginx, OpenMP
#
# The upstream GPU base (nvidia/cuda devel) brings nvcc and cuDNN; a plain Debian base
# gets Debian's CUDA toolkit from its non-free component instead, which has no cuDNN.
set -euo pipefail

usage() {
  sed -n '4,5p' "$0" >&2
  exit 2
}

[ $# = 2 ] || usage
stage=$1 variant=$2
case $stage in build | runtime) ;; *) usage ;; esac
case $variant in gpu | cpu) ;; *) usage ;; esac

packages=()
if [ "$stage" = build ]; then
  packages+=(build-essential ca-certificates git)
  if [ "$variant" = gpu ] && ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    # shellcheck source=/dev/null
    . /etc/os-release
    if [ "${ID:-}" != debian ]; then
      echo "no nvcc in the base image ($PRETTY_NAME): use an nvidia/cuda devel base, or a Debian one" >&2
      exit 1
    fi
    echo "no CUDA in the base: Debian's nvidia-cuda-toolkit from non-free (no cuDNN: darknet is built CUDNN=0)"
    echo "deb http://deb.debian.org/debian $VERSION_CODENAME contrib non-free" >/etc/apt/sources.list.d/non-free.list
    packages+=(nvidia-cuda-toolkit)
  fi
else
  packages+=(ca-certificates libgomp1 nginx python3 python3-venv)
fi

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
rm -rf /var/lib/apt/lists/* /etc/apt/sources.list.d/non-free.list
