# One entry point for people and CI. Every target creates .venv first if it is missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.lock pyproject.toml | sha256sum | cut -c1-12)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# pip-tools: both locks from pyproject.toml, every file pinned by hash
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: setup system-deps docker-deps demo test lint defs-check format ui serve clean-data lock deploy-check

# requirements.lock is the runtime set (what the image installs); requirements-dev.lock is the
# runtime set with the same pins plus the development tools, so setup installs that one.
$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

setup: $(STAMP)

demo: setup  ## the main job: demo corpus -> whole asset graph -> summary
	$(VENV)/bin/spira demo

lint: setup  ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check spira_assets spira_assets_tests benchmarks deploy
	$(VENV)/bin/ruff format --check spira_assets spira_assets_tests benchmarks deploy
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy deploy/check.py

# Debian packages the tests start for real: chromium (UI test) and postgresql (instance tests).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt)"; SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Two pytest-xdist workers; the tests that share a trained fixture run on one of them
# (spira_assets_tests/conftest.py, docs/PERFORMANCE.md "Test suite").
test: lint defs-check system-deps  ## lint, type check, dg checks, then the whole test suite
	$(PY) -m pytest -n 2 --dist loadgroup

defs-check: setup  ## Dagster's own command line loads the definitions (about 7 s)
	$(VENV)/bin/dg check defs
	$(VENV)/bin/dg list defs >/dev/null

format: setup
	$(VENV)/bin/ruff format spira_assets spira_assets_tests benchmarks deploy
	$(VENV)/bin/ruff check --fix spira_assets spira_assets_tests benchmarks deploy

ui: setup  ## Dagster UI (webserver + daemon) on :3000, MLflow UI on :5000, reports on :8001
	@$(PY) -m spira_assets.app.instance >/dev/null  # DAGSTER_HOME with spira_assets/app/instance.yaml
	$(PY) -m spira_assets.app.ui

serve: setup  ## the champion model over REST (MLflow scoring server) on :5001, predictions logged
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$${SPIRA_DATA_DIR:-$(CURDIR)/data}/mlflow.db}" \
	  SPIRA_DATA_DIR="$${SPIRA_DATA_DIR:-$(CURDIR)/data}" \
	  $(VENV)/bin/mlflow models serve -m "models:/spira-respiratory-insufficiency@champion" --env-manager local -h 127.0.0.1 -p 5001

lock: setup  ## re-resolve both locks after a change of pyproject.toml (keeps pins that still fit)
	$(VENV)/bin/pip-compile $(LOCK_FLAGS) -o requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile $(LOCK_FLAGS) --extra dev -c requirements.lock -o requirements-dev.lock pyproject.toml

# Debian packages the deployment check needs: the Docker engine, Compose v1 (used when the
# v2 plugin is missing) and debootstrap (local base images where no registry answers).
docker-deps:
	@missing=""; \
	command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
	  || missing="$$missing docker-compose"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt)"; SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

deploy-check: docker-deps  ## image + compose stack + batches processed by its containers (docs/DEPLOYMENT.md)
	$(PYTHON) deploy/check.py

clean-data:  ## remove everything generated under data/ (landing, lake, models, MLflow store) and the local Dagster instance
	find data -mindepth 1 -maxdepth 1 ! -name README.md ! -name .gitignore -exec rm -rf {} +
	rm -rf .dagster_home
