# Everything a fresh machine with Python 3.11 and pip needs: make demo, make test, make dev.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv  # bootstraps .venv, which then holds the same uv (dev group) for the tests
VENV := .venv
SYNCED := $(VENV)/.synced
NODE_SYNCED := node_modules/.synced  # Azurite, the Azure Storage emulator the tests start
CHROMIUM := /usr/bin/chromium  # Debian's, driven by Playwright in the UI test (never `playwright install`)
DAGSTER_PORT ?= 3000
# Test files run on two workers (pytest-xdist, a file per worker at a time): most tests wait on
# subprocesses, servers and Dagster runs, so two share this 2-core machine well.
PYTEST_WORKERS ?= 2
PYTEST := $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile
# Where runs write: MLOPS_HOME if set, else .mlops/<model project name> (mlops-assets project home).
HOME_DIR = $$($(VENV)/bin/mlops-assets project home)

.PHONY: install demo dev test test-ci data-test validate lint format bench bench-scoring lock clean postgres-server prometheus-tools \
	container-engine container-base

# uv lives in its own venv: `uv sync` removes from .venv whatever the lock does not list.
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(SYNCED): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

# The wheels the tests' library projects lock (LightGBM, XGBoost), fetched by hash: their
# environments are made from this folder (MLOPS_PACKAGE_INDEX) while the tests run offline.
WHEELHOUSE := .wheelhouse
WHEELHOUSE_SYNCED := $(WHEELHOUSE)/.synced
$(WHEELHOUSE_SYNCED): mlops_assets_tests/wheelhouse.txt | $(UV)
	$(TOOLS)/bin/pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		--require-hashes --dest $(WHEELHOUSE) --requirement $<
	touch $@

$(NODE_SYNCED): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The UI test needs Debian's Chromium: sudo apt-get install -y chromium" >&2; exit 1; \
	fi

# PostgreSQL for the team-instance test (deploy/dagster/dagster.yaml): Debian's server binaries.
postgres-server:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
		else \
			echo "The team-instance test needs PostgreSQL: sudo apt-get install -y postgresql" >&2; exit 1; \
		fi; \
	fi

# Prometheus and promtool for the alert rules' tests (deploy/prometheus/alerts.yml): Debian's.
prometheus-tools:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
		else \
			echo "The alert rule tests need Prometheus: sudo apt-get install -y --no-install-recommends prometheus" >&2; exit 1; \
		fi; \
	fi

# Images: podman (runc; configured by deploy/podman/, never /etc) and a Python base built from
# Debian packages when the engine has no python:3.11 slim image (no container registry is reached).
PODMAN := CONTAINERS_CONF=$(CURDIR)/deploy/podman/containers.conf \
	CONTAINERS_STORAGE_CONF=$(CURDIR)/deploy/podman/storage.conf podman
PYTHON_BASE_IMAGE := localhost/mlops-python-base:3.11-bookworm
PYTHON_SLIM_IMAGE := docker.io/library/python:3.11.11-slim-bookworm  # the Dockerfile's default

container-engine:
	@if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null; \
		else \
			echo "The image tests need podman: sudo apt-get install -y podman runc debootstrap" >&2; exit 1; \
		fi; \
	fi

container-base: container-engine
	@$(PODMAN) image exists $(PYTHON_BASE_IMAGE) || $(PODMAN) image exists $(PYTHON_SLIM_IMAGE) || \
		CONTAINERS_CONF=$(CURDIR)/deploy/podman/containers.conf \
		CONTAINERS_STORAGE_CONF=$(CURDIR)/deploy/podman/storage.conf \
		deploy/docker/python-base.sh $(PYTHON_BASE_IMAGE)

install: $(SYNCED)

demo: install
	$(VENV)/bin/mlops-assets demo

# The Dagster UI behind a login (the token in MLOPS_HOME/secrets/ui-token), a Host allow-list and an
# Origin check, with the daemon (mlops_assets/ops/ui.py); plain `dagster dev` would take mutations
# from any page the browser opens.
dev: install
	env --default-signal=INT,TERM $(VENV)/bin/mlops-assets ui --host 127.0.0.1 --port $(DAGSTER_PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint $(WHEELHOUSE_SYNCED) $(NODE_SYNCED) $(CHROMIUM) postgres-server prometheus-tools container-base
	$(PYTEST)

# What the build pipelines run (deploy/azure-pipelines/ci.yml, .github/workflows/ci.yml): the
# same suite as `make test`, with JUnit results and Cobertura coverage for the pipeline to publish.
test-ci: lint $(WHEELHOUSE_SYNCED) $(NODE_SYNCED) $(CHROMIUM) postgres-server prometheus-tools container-base
	$(PYTEST) --junitxml=test-results/junit.xml --cov=mlops_assets --cov-report=xml:test-results/coverage.xml

# The data tests: validation rules and training on the shipped model projects' seed data.
data-test: install
	$(VENV)/bin/pytest -m data

# The code location loads and every definition is valid (what the user-code deployment serves).
validate: install
	$(VENV)/bin/mlops-assets instance
	DAGSTER_HOME=$(HOME_DIR)/dagster $(VENV)/bin/dagster definitions validate -m mlops_assets.definitions

bench: install
	$(VENV)/bin/python bench/pipeline.py

# Needs wrk (apt-get install -y wrk); peers get their own venvs under bench/.venvs.
bench-scoring: install
	$(VENV)/bin/python bench/scoring.py

lock: | $(UV)
	$(UV) lock

# Every project's default home (and MLOPS_HOME, if set): its deployments stopped and the scoring
# images it holds removed first (one another home also holds stays), then its files.
clean:
	@if [ -x $(VENV)/bin/mlops-assets ]; then \
		for home in $(wildcard .mlops/*) $(MLOPS_HOME); do \
			MLOPS_HOME=$$home $(VENV)/bin/mlops-assets clean || exit 1; \
		done; \
	fi
	rm -rf .mlops $(MLOPS_HOME)
