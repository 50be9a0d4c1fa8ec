# syntax=docker/dockerfile:1
# cloudfree images, two targets:
#   docker build --target cpu -t cloudfree:0.1.0-cpu .   # slim Debian: worker, flow runs, Dask scheduler and loaders
#   docker build --target gpu -t cloudfree:0.1.0-gpu .   # CUDA runtime + CUDA torch: the GPU workers
# Both run as UID 1000 with an exec-form ENTRYPOINT (tini), so the Dask operator and the Prefect
# worker pass their commands as args. Settings come from the environment (ConfigMap/Secret);
# nothing site-specific is baked in.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

# --- the cloudfree wheel, built once for both targets ----------------------------------------
# The build context leaves cloudfree/localstack/ out (.dockerignore), and no target installs the
# `services` extra: the local dev stack (pgstac, the STAC API server, SeaweedFS) is not shipped.
# The demo world stays: it needs only a STAC API and S3, so it can seed a cluster's catalog.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY cloudfree/ cloudfree/
COPY flows/ flows/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- cpu: slim Python runtime -------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
ARG VERSION=0.1.0
ARG REVISION=unknown
# PyTorch's CPU wheel index; empty: the default index (whose Linux torch wheels are CUDA builds).
ARG TORCH_INDEX_URL=""
LABEL org.opencontainers.image.title="cloudfree" \
      org.opencontainers.image.description="Cloud-free Sentinel-2 mosaics: Prefect flows and Dask workers (CPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="cloudfree" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# apt versions follow the base image's Debian release; pinning exact revisions breaks every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 cloudfree \
    && useradd --uid 1000 --gid 1000 --home-dir /home/cloudfree --create-home --shell /usr/sbin/nologin cloudfree
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/cloudfree \
    PREFECT_HOME=/tmp/prefect
COPY --from=wheel /wheels /wheels
COPY constraints.txt /opt/cloudfree/constraints.txt
# torch first, from the CPU index when given; then cloudfree with the Kubernetes runtime
# (the pins of the k8s extra in pyproject.toml; tests/deploy/test_docker.py keeps them equal).
RUN python -m venv "$VIRTUAL_ENV" \
    && if [ -n "$TORCH_INDEX_URL" ]; then export PIP_INDEX_URL="$TORCH_INDEX_URL"; fi \
    && pip install --no-cache-dir torch==2.13.0 \
    && unset PIP_INDEX_URL \
    && pip install --no-cache-dir -c /opt/cloudfree/constraints.txt --find-links /wheels "cloudfree==${VERSION}" \
        dask-kubernetes==2026.3.0 prefect-kubernetes==0.8.0 kr8s==0.20.15 \
    && rm -rf /wheels
WORKDIR /opt/cloudfree
# The flows' source, where the deployments' pull step sets the working directory.
COPY flows/ flows/
USER 1000:1000
ENTRYPOINT ["tini", "-g", "--"]
CMD ["cloudfree", "--help"]

# --- gpu: CUDA runtime base, CUDA torch ----------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cloudfree" \
      org.opencontainers.image.description="Cloud-free Sentinel-2 mosaics: GPU Dask workers for the generator (CUDA)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="cloudfree" \
      org.opencontainers.image.base.name="${CUDA_IMAGE}"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# apt versions follow the base image's Ubuntu release; pinning exact revisions breaks every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv tini ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 cloudfree \
    && useradd --uid 1000 --gid 1000 --home-dir /home/cloudfree --create-home --shell /usr/sbin/nologin cloudfree
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/cloudfree \
    PREFECT_HOME=/tmp/prefect \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=wheel /wheels /wheels
COPY constraints.txt /opt/cloudfree/constraints.txt
# The default index's Linux torch wheel is the CUDA build.
RUN python3.11 -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir torch==2.13.0 \
    && pip install --no-cache-dir -c /opt/cloudfree/constraints.txt --find-links /wheels "cloudfree==${VERSION}" \
        dask-kubernetes==2026.3.0 prefect-kubernetes==0.8.0 kr8s==0.20.15 \
    && rm -rf /wheels
WORKDIR /opt/cloudfree
COPY flows/ flows/
USER 1000:1000
ENTRYPOINT ["tini", "-g", "--"]
CMD ["cloudfree", "--help"]
