# HotCRM Pipelines. `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python

# No PYTHONPATH: make setup installs the hotcrm package (editable), as a user's Airflow has it.
export HOTCRM_DATA_DIR ?= $(CURDIR)/data
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
# The embedded defaults, as Airflow connections (override them in the environment).
# hotcrm_db is the one database setting: the DAGs, the HTTP app and `python -m hotcrm` read it
# (HOTCRM_DATABASE_URL is only a fallback when no connection is set; docs/ARCHITECTURE.md).
export AIRFLOW_CONN_HOTCRM_DB ?= {"conn_type": "sqlite", "host": "$(HOTCRM_DATA_DIR)/hotcrm.db"}

# The virtualenv's own tools: venv ships an old setuptools (65.5, with known CVEs); <81 keeps
# pkg_resources, which some dependencies still import.
VENV_TOOLS := "pip>=25.3" "setuptools>=78.1.1,<81"

.PHONY: help setup venv-tools demo test test-distributed airflow api lint audit benchmarks clean

help:
	@echo "make demo      set up and run every pipeline once on the embedded defaults"
	@echo "make test      set up and run the whole test suite (PostgreSQL included)"
	@echo "make test-distributed  CeleryExecutor with two worker hosts (network namespaces; root, 4-11 min)"
	@echo "make airflow   airflow standalone with sample data (UI on http://localhost:8080, user admin; Ctrl-C stops all)"
	@echo "make api       serve the HTTP app alone under uvicorn on http://127.0.0.1:8000/hotcrm"
	@echo "make lint      ruff check and ruff format --check"
	@echo "make audit     pip-audit of the pinned requirements and the venv (says so when it could not)"

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade $(VENV_TOOLS)
	# production pins plus the test, benchmark and dev tools (the Docker image installs requirements.txt only)
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	# the hotcrm package itself (editable: `hotcrm ...` and `python -m hotcrm ...` work without PYTHONPATH)
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# Run by every `make setup`, so an existing venv gets tool fixes too.
venv-tools: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --upgrade $(VENV_TOOLS)

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME)
	$(VENV)/bin/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/db-migrate.log; exit 1)

setup: venv-tools $(AIRFLOW_HOME)/airflow.db
	$(PY) -m hotcrm db upgrade

demo: setup
	$(PY) -m hotcrm.airflow.demo

PYTEST_ARGS ?= -n 2

test: $(VENV)/.installed
	bash scripts/ensure-system-packages.sh
	$(PY) -m pytest $(PYTEST_ARGS)

# Not part of `make test`: it needs root (ip netns) and runs a whole cluster. .ci/run calls it.
test-distributed: $(VENV)/.installed
	bash scripts/ensure-system-packages.sh
	$(PY) -m pytest tests/distributed -m distributed -n 0 $(DISTRIBUTED_ARGS)

airflow: setup
	# Seeds the samples, local webhook source + SMTP sink, sized parallelism; Ctrl-C stops every process.
	# standalone starts its components as `airflow ...` from PATH
	PATH="$(VENV)/bin:$$PATH" $(PY) scripts/airflow_local.py

api: setup
	$(VENV)/bin/uvicorn hotcrm.api.standalone:app --host 127.0.0.1 --port 8000

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Exit 0: audited, nothing known; 1: known vulnerabilities; 3: advisory data unreachable, NOT audited.
audit: $(VENV)/.installed
	$(PY) scripts/audit.py requirements.txt requirements-dev.txt

clean:
	rm -rf $(AIRFLOW_HOME) $(HOTCRM_DATA_DIR)
