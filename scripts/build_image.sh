#!/usr/bin/env bash
# Build the service's image, darknet-service:cpu or darknet-service:gpu, from the one
# Dockerfile, with docker or podman (whichever can build here).
#
#   scripts/build_image.sh cpu|gpu [--base IMAGE] [--darknet-source DIR|debian] [--tag NAME] [--no-cache]
#
# The bases are the upstream ones (ubuntu; nvidia/cuda with cuDNN) where they can be
# pulled; where they cannot, a Debian bookworm base is made here with mmdebstrap, and
# the GPU image then has Debian's CUDA toolkit, without cuDNN (darknet built CUDNN=0).
# --base IMAGE names a base of your own for every stage. darknet is the commit pinned in
# darknet/build_darknet.sh, cloned from GitHub; --darknet-source DIR builds a source of
# your own, and `debian` (also what happens where GitHub cannot be reached) Debian's
# darknet source package: pjreddie's darknet of 2018, which the binding supports too.
# --no-cache builds every step again (newer packages); the layers are reused otherwise.
# As root it installs what it needs (podman, runc, mmdebstrap) where they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

UBUNTU_VERSION=22.04
CUDA_VERSION=12.6.3
DEBIAN_SUITE=bookworm
DEBIAN_BASE=localhost/darknet-service-base:$DEBIAN_SUITE
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/darknet-service
# Under the tests, containers carry the run's marker: __tests__/reaper.py removes them
# however the run ends.
run_label=()
[ -z "${DARKNET_TEST_RUN:-}" ] || run_label=(--label "darknet-test-run=$DARKNET_TEST_RUN")

usage() {
  sed -n '5p' "$0" >&2
  exit 2
}

say() { echo "build_image: $*"; }

# install PACKAGE...: as root with apt, else stop with what to install.
install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "build_image: needs $* (sudo apt-get install $*)" >&2
    exit 1
  fi
}

# The engine as an array: docker where its daemon answers, else podman (with runc where
# it is installed: crun refuses some machines' cgroup layout).
choose_engine() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=(docker)
    return
  fi
  if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    install podman runc
  fi
  engine=(podman --runtime runc)
}

# Whether the engine has IMAGE, or can pull it.
have_or_pull() {
  "${engine[@]}" image inspect "$1" >/dev/null 2>&1 || timeout 600 "${engine[@]}" pull -q "$1" >/dev/null 2>&1
}

# A Debian base image, made once (mmdebstrap, about 20 s to a minute) and kept.
debian_base() {
  "${engine[@]}" image inspect "$DEBIAN_BASE" >/dev/null 2>&1 && return
  command -v mmdebstrap >/dev/null || install mmdebstrap
  local tarball
  tarball=$(mktemp --suffix=.tar)
  say "making $DEBIAN_BASE with mmdebstrap"
  mmdebstrap --quiet --variant=minbase "$DEBIAN_SUITE" "$tarball"
  "${engine[@]}" import --quiet "$tarball" "$DEBIAN_BASE" >/dev/null
  rm -f "$tarball"
}

# podman as root sets rlimits above what some machines (containers themselves) allow
# their root: then its default ulimits are emptied, as a drop-in of containers.conf.
check_container_start() {
  local said
  said=$("${engine[@]}" run "${run_label[@]}" --rm "$1" true 2>&1) && return
  if [ "${engine[0]}" = podman ] && [[ $said == *"error setting rlimit"* ]] && [ "$(id -u)" = 0 ]; then
    mkdir -p /etc/containers/containers.conf.d
    printf '[containers]\n# rlimits above what this machine allows root make runc fail\ndefault_ulimits = []\n' \
      >/etc/containers/containers.conf.d/50-host-ulimits.conf
    say "podman's default ulimits exceed this machine's: emptied in /etc/containers/containers.conf.d/50-host-ulimits.conf"
    said=$("${engine[@]}" run "${run_label[@]}" --rm "$1" true 2>&1) && return
  fi
  echo "build_image: ${engine[*]} cannot start a container: ${said##*$'\n'}" >&2
  exit 1
}

# Debian's darknet source package, unpacked once into the cache (in a container of the
# Debian base, so the host's apt sources are left alone). Prints its directory, alone.
debian_darknet_source() {
  local into=$CACHE/debian-darknet-source
  local found
  found=$(find "$into" -mindepth 2 -maxdepth 2 -name Makefile -printf '%h\n' 2>/dev/null | head -n1)
  if [ -z "$found" ]; then
    debian_base >&2
    rm -rf "$into" && mkdir -p "$into"
    say "fetching Debian's darknet source package (apt-get source darknet)" >&2
    "${engine[@]}" run "${run_label[@]}" --rm -v "$into:/out" "$DEBIAN_BASE" bash -c "
      echo 'deb-src http://deb.debian.org/debian $DEBIAN_SUITE main' >/etc/apt/sources.list.d/source.list &&
      apt-get update -qq && apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null &&
      cd /out && apt-get source -qq darknet >/dev/null 2>&1 && rm -f /out/*.tar.* /out/*.dsc" >&2
    found=$(find "$into" -mindepth 2 -maxdepth 2 -name Makefile -printf '%h\n' | head -n1)
  fi
  echo "$found"
}

[ $# -ge 1 ] || usage
variant=$1
shift
case $variant in cpu | gpu) ;; *) usage ;; esac
base="" darknet_source="" tag="darknet-service:$variant" no_cache=()
while [ $# -gt 0 ]; do
  case $1 in
    --base) base=${2:-}; shift 2 ;;
    --darknet-source) darknet_source=${2:-}; shift 2 ;;
    --tag) tag=${2:-}; shift 2 ;;
    --no-cache) no_cache=(--no-cache); shift ;;
    *) usage ;;
  esac
done

choose_engine
# Fully qualified: podman resolves no short names without a registries.conf that lists some.
cpu_base=docker.io/library/ubuntu:$UBUNTU_VERSION
gpu_build_base=docker.io/nvidia/cuda:$CUDA_VERSION-cudnn-devel-ubuntu$UBUNTU_VERSION
gpu_runtime_base=docker.io/nvidia/cuda:$CUDA_VERSION-cudnn-runtime-ubuntu$UBUNTU_VERSION
if [ -n "$base" ]; then
  cpu_base=$base gpu_build_base=$base gpu_runtime_base=$base
elif [ "$variant" = cpu ] && ! have_or_pull "$cpu_base"; then
  debian_base
  say "$cpu_base cannot be pulled: building on $DEBIAN_BASE (Debian $DEBIAN_SUITE, made with mmdebstrap)"
  cpu_base=$DEBIAN_BASE
elif [ "$variant" = gpu ] && ! { have_or_pull "$gpu_build_base" && have_or_pull "$gpu_runtime_base"; }; then
  debian_base
  say "the nvidia/cuda bases cannot be pulled: building on $DEBIAN_BASE with Debian's CUDA toolkit (no cuDNN: CUDNN=0)"
  gpu_build_base=$DEBIAN_BASE gpu_runtime_base=$DEBIAN_BASE
fi
# The stages of the other variant are built too by podman (it cannot skip a stage chosen
# through an ARG): they name a base already here, and have no step of their own.
if [ "$variant" = cpu ]; then
  gpu_build_base=$cpu_base gpu_runtime_base=$cpu_base
  check_container_start "$cpu_base"
else
  cpu_base=$gpu_runtime_base
  check_container_start "$gpu_runtime_base"
fi

if [ -z "$darknet_source" ] &&
  ! timeout 30 git ls-remote --exit-code "$(darknet/build_darknet.sh --print-repo)" HEAD >/dev/null 2>&1; then
  say "GitHub cannot be reached for the pinned AlexeyAB darknet: building Debian's darknet source package instead"
  darknet_source=debian
fi
[ "$darknet_source" = debian ] && darknet_source=$(debian_darknet_source)
context_args=()
if [ -n "$darknet_source" ]; then
  [ -f "$darknet_source/Makefile" ] || { echo "build_image: $darknet_source has no darknet Makefile" >&2; exit 1; }
  context_args=(--build-context "darknet-source=$(readlink -f "$darknet_source")")
  say "darknet from $darknet_source"
fi
build_args=()
[ "${engine[0]}" = podman ] && build_args+=(--skip-unused-stages=false)
# pip in the build trusts what this machine trusts (a TLS-inspecting proxy's CA).
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] && build_args+=(--secret "id=ca-bundle,src=$ca_bundle")

say "building $tag with ${engine[*]}"
started=$(date +%s)
"${engine[@]}" build "${build_args[@]}" "${context_args[@]}" "${no_cache[@]}" \
  --build-arg VARIANT="$variant" \
  --build-arg CPU_BASE="$cpu_base" \
  --build-arg GPU_BUILD_BASE="$gpu_build_base" \
  --build-arg GPU_RUNTIME_BASE="$gpu_runtime_base" \
  --tag "$tag" .
size=$("${engine[@]}" image inspect --format '{{.Size}}' "$tag")
built=$("${engine[@]}" run "${run_label[@]}" --rm "$tag" cat /opt/darknet/darknet-build.txt)
say "$tag built in $(($(date +%s) - started)) s, $((size / 1000000)) MB; darknet: $built"
# The line to run it with what built it: a podman build is not in docker's store.
run_line=("${engine[@]}" run --rm -p 8080:8080)
[ "$variant" = gpu ] && run_line+=(--gpus=all)
[ "${engine[0]}" = podman ] && [ "$variant" = gpu ] && run_line=("${engine[@]}" run --rm -p 8080:8080 --device nvidia.com/gpu=all)
say "run it: ${run_line[*]} $tag   (your model: add -v /path/to/model:/opt/ml/model:ro)"
