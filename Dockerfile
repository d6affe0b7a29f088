# The detection service with darknet built in.
#   GPU (default):  docker build -t darknet-service .
#                   docker run --gpus=all -p 8080:8080 darknet-service
#   CPU only:       docker build --build-arg VARIANT=cpu -t darknet-service:cpu .
# Put your model in ./aimodel before building, or mount it at /opt/ml/model.
ARG VARIANT=gpu
ARG CUDA_VERSION=12.6.3
ARG UBUNTU_VERSION=22.04

# --- darknet, built at the commit pinned in darknet/build_darknet.sh ---------------
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-ubuntu${UBUNTU_VERSION} AS build-gpu
FROM ubuntu:${UBUNTU_VERSION} AS build-cpu

# hadolint ignore=DL3006
FROM build-${VARIANT} AS darknet
ARG VARIANT
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential ca-certificates git \
 && rm -rf /var/lib/apt/lists/*
COPY darknet/build_darknet.sh /tmp/build_darknet.sh
RUN /tmp/build_darknet.sh --variant "${VARIANT}" --out /opt/darknet

# --- runtime: only what serving needs ----------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu${UBUNTU_VERSION} AS runtime-gpu
FROM ubuntu:${UBUNTU_VERSION} AS runtime-cpu

# hadolint ignore=DL3006
FROM runtime-${VARIANT}
# nginx reads whole requests before gunicorn does (app/http/front.py); it runs as the
# service's user with its config, temp files and pid in a private directory, but the
# nginx of Ubuntu 22.04 (1.18) opens its compiled-in error log before reading a config.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgomp1 nginx python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin service \
 && chown service /var/log/nginx
WORKDIR /srv/app

# Dependencies first: this layer is reused until requirements.txt changes. The same
# helper as run.sh, so run.sh finds the venv up to date and installs nothing at start.
COPY requirements.txt ./
COPY scripts/ensure_venv.sh scripts/
RUN bash -c 'source scripts/ensure_venv.sh && ensure_venv requirements.txt' && rm -rf /root/.cache

COPY --from=darknet /opt/darknet/libdarknet.so /opt/darknet/libdarknet.so
COPY app/ app/
COPY darknet/ darknet/
COPY scripts/ scripts/
COPY gunicorn.conf.py run.sh ./
COPY --chown=service:service aimodel/ aimodel/
# SageMaker starts the container as `docker run IMAGE serve`.
RUN ln -s /srv/app/run.sh /usr/local/bin/serve

ENV PORT=8080 \
    LIBDARKNET_PATH=/opt/darknet/libdarknet.so \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080
CMD ["./run.sh"]
