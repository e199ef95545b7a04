# Two commands on a fresh machine: `make demo` (set up, run the training DAG) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

# One local home for everything the demo creates (git-ignored).
export RECSYS_HOME := $(CURDIR)/.recsys
export AIRFLOW_HOME := $(RECSYS_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(RECSYS_HOME)/airflow/airflow.db
export AIRFLOW__CORE__PARALLELISM := 4
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export AIRFLOW__API__HOST := 127.0.0.1
export AIRFLOW__API__PORT := 8080
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS := True
export MLFLOW_TRACKING_URI := sqlite:///$(RECSYS_HOME)/mlflow.db
export RECSYS_ARTIFACT_ROOT := $(RECSYS_HOME)/mlartifacts
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0
# Byte-compiled caches make every subprocess (Airflow tasks, CLI tests) start seconds faster.
unexport PYTHONDONTWRITEBYTECODE

TORCH ?= torch==2.13.0
DEMO_CONF ?= {"source": "synthetic", "models": ["als"], "synthetic_users": 1000, "synthetic_items": 500}

# The production topology on this machine (`make up` / `make down`, see README "Architecture"):
# every setting is an environment variable; these are only defaults, override any of them.
STACK_PG ?= postgresql+psycopg2://postgres@127.0.0.1:5432
STACK_VARS := \
	AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(STACK_PG)/recsys_airflow \
	RECSYS_MLFLOW_BACKEND_URI=$(STACK_PG)/recsys_mlflow \
	RECSYS_MLFLOW_AUTH_URI=$(STACK_PG)/recsys_mlflow_auth \
	RECSYS_ARTIFACT_ROOT=$(RECSYS_HOME)/artifact-store \
	RECSYS_AIRFLOW_PORT=$${RECSYS_AIRFLOW_PORT:-8080} RECSYS_MLFLOW_PORT=$${RECSYS_MLFLOW_PORT:-5000} \
	RECSYS_DASK_PORT=$${RECSYS_DASK_PORT:-8786} RECSYS_API_PORT=$${RECSYS_API_PORT:-8000}

.PHONY: demo test test-fast bench airflow mlflow install clean lock help up down status system-test browser

help:
	@echo "make demo    set up .venv from the lock file and run the recsys_training DAG on synthetic data"
	@echo "make test    run the whole test suite"
	@echo "make airflow start Airflow (scheduler, API server, DAG processor) on http://127.0.0.1:8080"
	@echo "make mlflow  start the MLflow UI on http://127.0.0.1:5000"
	@echo "make bench   run the benchmarks (writes benchmarks/results/*.json)"
	@echo "make up      start the topology: Airflow, MLflow server, Dask scheduler + 2 workers, recsys serve"
	@echo "make down    stop it (make status shows it); logs in .recsys/stack/logs"
	@echo "make system-test  bring the topology up, train through the REST API and the browser form, bring it down"

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python -q -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps -e .
	@# torch: pip takes the CPU wheel these machines keep on disk (uv would fetch a multi-GB CUDA
	@# build); its dependencies are already pinned in the lock, hence --no-deps.
	$(BIN)/python -m pip install -q --no-deps $(TORCH)
	touch $@

install: $(VENV)/.installed

$(RECSYS_HOME)/.ready: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME) $(RECSYS_HOME)/lake $(RECSYS_ARTIFACT_ROOT)
	$(BIN)/airflow db migrate > $(RECSYS_HOME)/airflow-migrate.log 2>&1 || (tail -20 $(RECSYS_HOME)/airflow-migrate.log; exit 1)
	$(BIN)/python -c "from pipelines.tracking.setup import configure_mlflow; configure_mlflow()"
	touch $@

demo: $(RECSYS_HOME)/.ready
	$(BIN)/airflow dags reserialize > /dev/null 2>&1 || true
	$(BIN)/airflow dags test recsys_training -c '$(DEMO_CONF)' > $(RECSYS_HOME)/demo-dag.log 2>&1 \
		|| (tail -40 $(RECSYS_HOME)/demo-dag.log; exit 1)
	@$(BIN)/recsys status

test: $(VENV)/.installed browser
	$(BIN)/python -m pytest

# The browser test drives Debian's chromium (Playwright cannot download browsers here).
browser:
	@command -v chromium > /dev/null || { apt-get update -q && apt-get install -y -q chromium > /dev/null; } \
		|| echo "chromium could not be installed: the browser test will skip"

system-test: $(VENV)/.installed browser
	$(BIN)/python -m pytest tests/integration/test_system.py tests/integration/test_trigger_form_browser.py

up: $(VENV)/.installed
	$(STACK_VARS) $(BIN)/python -m pipelines.stack up

down:
	$(STACK_VARS) $(BIN)/python -m pipelines.stack down

status:
	$(STACK_VARS) $(BIN)/python -m pipelines.stack status

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow"

bench: $(VENV)/.installed
	$(BIN)/uv pip install --python $(BIN)/python -q -r requirements.lock
	$(BIN)/python benchmarks/synthetic.py --rows 5000000
	$(BIN)/python benchmarks/synthetic.py --rows 20000000
	$(BIN)/python benchmarks/als_vs_implicit.py
	$(BIN)/python benchmarks/als_vs_implicit.py --users 20000 --items 5000 --nnz 1000000 --output benchmarks/results/als_vs_implicit_1m.json
	$(BIN)/python benchmarks/pipeline.py --size 1M
	$(BIN)/python benchmarks/pipeline.py --size 5M
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/summary.py > /dev/null
	@echo "results: benchmarks/results/*.json, SUMMARY.md, scale.md, scale.png"

airflow: $(RECSYS_HOME)/.ready
	@echo "Airflow UI: http://127.0.0.1:8080 (local admin, no login). Ctrl-C stops it."
	setsid $(BIN)/airflow standalone

mlflow: $(RECSYS_HOME)/.ready
	@echo "MLflow UI: http://127.0.0.1:5000. Ctrl-C stops it."
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --default-artifact-root $(RECSYS_ARTIFACT_ROOT) -h 127.0.0.1 -p 5000

lock:
	$(BIN)/uv pip compile pyproject.toml --extra test --extra bench --python-version 3.11 -o requirements.lock -q
	$(BIN)/uv pip compile pyproject.toml --extra test --extra bench --extra gpu --python-version 3.11 -o requirements-gpu.lock -q

clean:
	rm -rf $(RECSYS_HOME)
