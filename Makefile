# HotCRM Pipelines. `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python

export PYTHONPATH := $(CURDIR)/include:$(CURDIR)
export HOTCRM_DATA_DIR ?= $(CURDIR)/data
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
# The embedded defaults, as Airflow connections (override them in the environment).
export AIRFLOW_CONN_HOTCRM_DB ?= {"conn_type": "sqlite", "host": "$(HOTCRM_DATA_DIR)/hotcrm.db"}

.PHONY: help setup demo test airflow api lint benchmarks clean

help:
	@echo "make demo      set up and run every pipeline once on the embedded defaults"
	@echo "make test      set up and run the whole test suite (PostgreSQL included)"
	@echo "make airflow   airflow standalone with sample data (UI on http://localhost:8080, user admin; Ctrl-C stops all)"
	@echo "make api       serve the HTTP app alone under uvicorn on http://127.0.0.1:8000/hotcrm"
	@echo "make lint      ruff check and ruff format --check"

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME)
	$(VENV)/bin/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/db-migrate.log; exit 1)

setup: $(VENV)/.installed $(AIRFLOW_HOME)/airflow.db
	$(PY) -m hotcrm db upgrade

demo: setup
	$(PY) -m hotcrm.demo

PYTEST_ARGS ?= -n 2

test: $(VENV)/.installed
	bash scripts/ensure-system-packages.sh
	$(PY) -m pytest $(PYTEST_ARGS)

airflow: setup
	# Seeds the samples, local webhook source + SMTP sink, sized parallelism; Ctrl-C stops every process.
	# standalone starts its components as `airflow ...` from PATH
	PATH="$(VENV)/bin:$$PATH" $(PY) scripts/airflow_local.py

api: setup
	$(VENV)/bin/uvicorn hotcrm.api.standalone:app --host 127.0.0.1 --port 8000

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(AIRFLOW_HOME) $(HOTCRM_DATA_DIR)
