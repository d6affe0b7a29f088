# The detection service with darknet built in: the GPU image (default) or the CPU one.
#   scripts/build_image.sh gpu|cpu      docker or podman, any base (README, Docker)
#   docker build -t darknet-service:gpu .
#   docker build --build-arg VARIANT=cpu -t darknet-service:cpu .
#   docker run --gpus=all -p 8080:8080 darknet-service:gpu
# Mount your model at /opt/ml/model, or put it in ./aimodel before building: it is then
# built in at /opt/ml/model, where a mounted model (SageMaker's) takes its place.
ARG VARIANT=gpu
ARG CUDA_VERSION=12.6.3
ARG UBUNTU_VERSION=22.04
# The bases: the upstream ones unless named here. On a base without CUDA (a Debian one,
# scripts/build_image.sh makes it where these cannot be pulled) the GPU image takes
# Debian's CUDA toolkit from non-free, which has no cuDNN: darknet is built CUDNN=0.
ARG CPU_BASE=ubuntu:${UBUNTU_VERSION}
ARG GPU_BUILD_BASE=nvidia/cuda:${CUDA_VERSION}-cudnn-devel-ubuntu${UBUNTU_VERSION}
ARG GPU_RUNTIME_BASE=nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu${UBUNTU_VERSION}

# Stages that only name a base (no step of their own: podman, which cannot skip a stage
# chosen through an ARG, builds them all for nothing).
# hadolint ignore=DL3006
FROM ${GPU_BUILD_BASE} AS build-gpu
# hadolint ignore=DL3006
FROM ${CPU_BASE} AS build-cpu
# hadolint ignore=DL3006
FROM ${GPU_RUNTIME_BASE} AS runtime-gpu
# hadolint ignore=DL3006
FROM ${CPU_BASE} AS runtime-cpu

# The darknet source: empty, so the commit pinned in darknet/build_darknet.sh is cloned;
# `--build-context darknet-source=DIR` builds DIR instead (this stage is then DIR).
FROM scratch AS darknet-source

# --- darknet --------------------------------------------------------------------------
# hadolint ignore=DL3006
FROM build-${VARIANT} AS darknet
ARG VARIANT
# Only the recipes, each before what it changes: a change to the binding rebuilds nothing
# here, one to the build recipe does not install the compilers (or CUDA, GBs) again.
COPY darknet/install_deps.sh /tmp/darknet/
RUN /tmp/darknet/install_deps.sh build "${VARIANT}"
COPY darknet/build_darknet.sh /tmp/darknet/
COPY --from=darknet-source / /tmp/darknet-source/
RUN /tmp/darknet/build_darknet.sh --variant "${VARIANT}" --out /opt/darknet --source /tmp/darknet-source

# --- runtime: only what serving needs ---------------------------------------------------
# hadolint ignore=DL3006
FROM runtime-${VARIANT}
ARG VARIANT
# nginx reads whole requests before gunicorn does (app/serve/front.py); it runs as the
# service's user with its config, temp files and pid in a private directory, but the
# nginx of Ubuntu 22.04 (1.18) opens its compiled-in error log before reading a config.
COPY darknet/install_deps.sh /tmp/darknet/
RUN /tmp/darknet/install_deps.sh runtime "${VARIANT}" \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin service \
 && chown service /var/log/nginx
WORKDIR /srv/app

# Dependencies first, from the lock: this layer is reused until the lock changes. The same
# helper as run.sh, so run.sh finds the venv up to date and installs nothing at start.
# Behind a proxy that inspects TLS the build machine trusts it in its CA bundle:
# scripts/build_image.sh lends pip that bundle as a build secret, never kept in the image.
COPY locks/requirements.txt locks/
COPY scripts/ensure_venv.sh scripts/
RUN --mount=type=secret,id=ca-bundle \
    bash -ec '[ ! -f /run/secrets/ca-bundle ] || export PIP_CERT=/run/secrets/ca-bundle; \
              source scripts/ensure_venv.sh; ensure_venv locks/requirements.txt' \
 && rm -rf /root/.cache \
 && find .venv -name __pycache__ -prune -exec rm -rf {} +

# libdarknet.so, what it was built from (darknet-build.txt), and the CUDA libraries it
# needs that the runtime base lacks (Debian's toolkit; nvidia/cuda's runtime has them).
COPY --from=darknet /opt/darknet/ /opt/darknet/
RUN if [ -d /opt/darknet/lib ]; then echo /opt/darknet/lib > /etc/ld.so.conf.d/darknet.conf && ldconfig; fi

# A model in ./aimodel is built in where SageMaker mounts one, so a mounted model wins;
# without one, no /opt/ml/model (run.sh then fetches the demo model at start).
COPY --chown=10001:10001 aimodel/ /opt/ml/model/
RUN ls /opt/ml/model/*.weights >/dev/null 2>&1 || rm -rf /opt/ml
COPY app/ app/
COPY darknet/ darknet/
COPY scripts/ scripts/
COPY gunicorn.conf.py run.sh ./
# aimodel/ stays empty but its README: ./aimodel would win over /opt/ml/model.
COPY aimodel/README.md aimodel/
# SageMaker starts the container as `docker run IMAGE serve`.
RUN ln -s /srv/app/run.sh /usr/local/bin/serve

ENV PORT=8080 \
    LIBDARKNET_PATH=/opt/darknet/libdarknet.so \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080
CMD ["./run.sh"]
