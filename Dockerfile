# spira_assets image: the code location (gRPC code server), and the same image for the
# webserver, the daemon, run pods, step pods and the MLflow server (see deploy/).
#
#   docker build -t spira-assets:0.1.0 .                                            # CPU
#   docker build --build-arg BASE_IMAGE=spira-cuda-base:13.0.1-py3.11 \
#                -t spira-assets:0.1.0-cuda .                                       # CUDA
#
# BASE_IMAGE is the only choice: any image with Python 3.11 and its venv module. CPU: the
# official Python image (default). CUDA: deploy/cuda-base/Dockerfile (NVIDIA's runtime image
# with that Python), or, without a registry, the stand-in from deploy/local-bases/build.sh.
# It is used in the one FROM, so no build fetches a base it does not use, with BuildKit or
# with the legacy builder. The lock's torch wheels carry their own CUDA user-space libraries
# (nvidia-* wheels), so either variant trains on a GPU when the container runtime exposes one.
#
# One stage: pip installs wheels only, so there are no build tools to leave behind, and a
# source change rebuilds the small project layer instead of copying the 6 GB environment.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv \
 && useradd --create-home --uid 10001 spira \
 && mkdir -p /data /opt/dagster/dagster_home \
 && printf 'telemetry:\n  enabled: false\n' > /opt/dagster/dagster_home/dagster.yaml \
 && chown -R spira /data /opt/dagster/dagster_home
# Dependencies first, in their own cached layer: only a change of the lock rebuilds it.
# requirements.lock is the runtime set only (no test or lint tools), every file hash-checked.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock && rm /tmp/requirements.lock
COPY workspace.yaml /opt/spira/workspace.yaml
COPY deploy/dagster/dagster-postgres.yaml /opt/spira/dagster-postgres.yaml
COPY pyproject.toml README.md /src/
COPY spira_assets /src/spira_assets
# setuptools comes from the lock: building the project fetches nothing unhashed
RUN pip install --no-deps --no-build-isolation /src && rm -rf /src \
 && python -c "import spira_assets.definitions"
USER 10001
WORKDIR /opt/spira
ENV SPIRA_DATA_DIR=/data DAGSTER_HOME=/opt/dagster/dagster_home SPIRA_DEPLOYMENT=local
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "spira_assets.definitions"]
