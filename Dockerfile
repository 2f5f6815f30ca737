# spira_assets image: the code location (gRPC code server), and the same image for the
# webserver, the daemon, run pods, step pods and the MLflow server (see deploy/).
#
#   docker build -t spira-assets:0.1.0 .                                  # CPU (default)
#   docker build --build-arg VARIANT=cuda -t spira-assets:0.1.0-cuda .   # CUDA base for GPU nodes
#
# The lock's torch wheels are the CUDA builds and carry their own CUDA user-space libraries, so
# both variants train on a GPU when the container runtime exposes one; the cuda variant starts
# from NVIDIA's runtime image (driver-compatibility libraries, nvidia-smi), which GPU node
# pools and their device plugins are validated against.
ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04

# ---- build: a virtual environment from the lock, then the project as a wheel --------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, in their own cached layer: only a change of the lock rebuilds it.
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY spira_assets ./spira_assets
RUN pip install --no-deps . && python -c "import spira_assets.definitions"

# ---- runtime bases: Debian with Python (cpu) or NVIDIA's CUDA runtime plus that Python ------
FROM ${PYTHON_IMAGE} AS base-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

FROM ${CUDA_IMAGE} AS base-cuda
# The same CPython as the build stage (under /usr/local), and the libraries it links against.
COPY --from=build /usr/local /usr/local
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libssl3 libsqlite3-0 libffi8 \
      libbz2-1.0 liblzma5 zlib1g ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ldconfig

# ---- runtime: the chosen base, the environment, a non-root user --------------------------
FROM base-${VARIANT} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
COPY --from=build /opt/venv /opt/venv
COPY workspace.yaml /opt/spira/workspace.yaml
COPY deploy/dagster/dagster-postgres.yaml /opt/spira/dagster-postgres.yaml
RUN useradd --create-home --uid 10001 spira \
 && mkdir -p /data /opt/dagster/dagster_home \
 && printf 'telemetry:\n  enabled: false\n' > /opt/dagster/dagster_home/dagster.yaml \
 && chown -R spira /data /opt/dagster/dagster_home
USER 10001
WORKDIR /opt/spira
ENV SPIRA_DATA_DIR=/data DAGSTER_HOME=/opt/dagster/dagster_home SPIRA_DEPLOYMENT=local
EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "spira_assets.definitions"]
