# spira_assets code location image (CPU by default).
# Build:  docker build -t spira-assets .
# Run:    docker run -p 4000:4000 -v $PWD/data:/data -e SPIRA_PSEUDONYM_KEY=... spira-assets
# The production image (CUDA base, compose, Helm) is the deployment issue's work.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Dependencies first, in their own cached layer: only a lock change rebuilds it.
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md workspace.yaml ./
COPY spira_assets ./spira_assets
RUN pip install --no-deps . \
 && useradd --create-home --uid 10001 spira \
 && mkdir -p /data /dagster_home \
 && printf 'telemetry:\n  enabled: false\n' > /dagster_home/dagster.yaml \
 && chown -R spira /data /dagster_home
USER spira
ENV SPIRA_DATA_DIR=/data DAGSTER_HOME=/dagster_home
EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "spira_assets.definitions"]
