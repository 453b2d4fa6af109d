# airflow-provider-prisjakt: `make test` and `make demo` work on a fresh clone; both create or reuse .venv.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
CONSTRAINTS ?= requirements/constraints-airflow-3.3.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(AIRFLOW_VERSION)

COMPAT_VENV ?= .venv-2.11
COMPAT_AIRFLOW_VERSION ?= 2.11.2
COMPAT_CONSTRAINTS ?= requirements/constraints-airflow-2.11.txt

.PHONY: venv test test-compat lint typecheck unit demo clean

$(STAMP): pyproject.toml $(CONSTRAINTS) scripts/ensure-system-packages.sh
	bash scripts/ensure-system-packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) "apache-airflow==$(AIRFLOW_VERSION)" -e ".[all,dev]"
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Lint, type-check and run every test (unit and integration against real local services).
test: lint typecheck
	$(BIN)/pytest

## The same test suite on the oldest supported Airflow (2.11), in a second venv.
test-compat:
	$(MAKE) --no-print-directory VENV=$(COMPAT_VENV) AIRFLOW_VERSION=$(COMPAT_AIRFLOW_VERSION) CONSTRAINTS=$(COMPAT_CONSTRAINTS) venv
	$(COMPAT_VENV)/bin/pytest -m "not airflow3_only"

## Unit tests only (no network, no services).
unit: $(STAMP)
	$(BIN)/pytest tests/unit

## Run the main job end to end on embedded defaults (the sandbox plus SQLite).
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) $(COMPAT_VENV) bench/.venv bench/.venv-dlt bench/.venv-dlt-airflow .mypy_cache .ruff_cache build *.egg-info

## Benchmarks against HttpOperator, dlt and a raw requests loop; writes bench/RESULTS.md (under 30 minutes on 2 cores,
## venv builds included). Not part of `make test`.
.PHONY: bench
bench:
	export BENCH_STARTED=$$(date +%s) && \
	PYTHON="$(PYTHON)" AIRFLOW_VERSION="$(AIRFLOW_VERSION)" CONSTRAINTS="$(CONSTRAINTS)" bash bench/setup.sh && \
	bench/.venv/bin/python bench/run.py

## Soak: daily exports against the sandbox with faults on for SOAK_MINUTES (default 10), reporting RSS
## and open file descriptors over time; fails if either grows. Not part of `make test` or CI.
SOAK_MINUTES ?= 10
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python soak/soak.py --minutes $(SOAK_MINUTES)

## Try the package as a new user would: build the wheel from this clone, install it with its extras into a
## throwaway venv under /tmp (Airflow $(AIRFLOW_VERSION), $(CONSTRAINTS)) and run the README's DAG with
## `airflow dags test` against the sandbox, moto_server and a throwaway PostgreSQL database (PGHOST, PGPORT,
## PGUSER, PGPASSWORD; default 127.0.0.1:5432, postgres); then clean up. A few minutes. Not part of `make test` or CI.
.PHONY: try-as-new-user
try-as-new-user:
	PYTHON="$(PYTHON)" AIRFLOW_VERSION="$(AIRFLOW_VERSION)" CONSTRAINTS="$(CONSTRAINTS)" bash scripts/try-as-new-user.sh
