# osml — every target installs what it needs itself (a fresh clone needs only python3.11 and make).
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# requirements.lock pins what the images run; requirements-dev.lock adds the tools, at the same versions
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
LOCK_FLAGS := --python-version 3.11 --python-platform linux --generate-hashes --quiet --custom-compile-command "make lock"
UCI ?= ../shared/data/uci-incident-event-log/incident_event_log.zip

.PHONY: help install lock up test lint typecheck unit bench bench-scale eval stack stack-down services clean

help:
	@echo "make install     .venv with exactly the versions in $(DEV_LOCK) (make lock refreshes the locks)"
	@echo "make up          train on bundled synthetic data if the registry is empty, then serve (embedded)"
	@echo "make test        lint, typecheck and the whole test suite (starts PostgreSQL/RabbitMQ if down)"
	@echo "make bench       facade vs 'mlflow models serve', batch vs in-process, end-to-end events"
	@echo "make bench-scale training (single process vs Dask) and batch scoring cost by size (SIZES=100k,1M,5M)"
	@echo "make eval        real-data quality report on the UCI event log (UCI=path)"
	@echo "make stack       local production-shaped stack (tracking server on Postgres + S3, facade, trainer, worker, relay)"
	@echo "make stack-down  stop exactly what 'make stack' started"

$(BIN)/python:
	$(PY) -m venv $(VENV)

# uv comes from the lock itself: pip bootstraps the locked uv, which then makes .venv exactly the lock (removing
# what the lock does not name, hashes checked) and adds osml itself without touching a dependency.
$(STAMP): $(DEV_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$$(grep -E '^uv==' $(DEV_LOCK) | cut -d' ' -f1)"
	$(BIN)/uv pip sync -q --python $(BIN)/python $(DEV_LOCK)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# after a change to the dependencies in pyproject.toml: resolve again (keeping the other pins; LOCK_UPGRADE=--upgrade
# moves every pin to the newest allowed), then install what was resolved
lock: | $(BIN)/python
	@test -x $(BIN)/uv || $(BIN)/pip install -q "$$(grep -E '^uv==' $(DEV_LOCK) | cut -d' ' -f1)"
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) $(LOCK_UPGRADE) -o $(LOCK)
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(LOCK_UPGRADE) -c $(LOCK) -o $(DEV_LOCK)
	$(MAKE) install

up: install
	$(BIN)/osml up

services:
	@bash infra/ensure-services.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy osml training serving trainer worker scoring

unit: install
	$(BIN)/pytest -m "unit or contract" -q

test: install services lint typecheck
	$(BIN)/pytest -q

bench: install services
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; } || { echo "wrk is needed (Debian package 'wrk')"; exit 1; }
	$(BIN)/python -m bench.run

# SIZES (orders, e.g. 100k,1M,5M), ENGINES (single,dask), SCORE_ORDERS (1M; 0 skips), RESULTS (a JSON-lines file)
bench-scale: install
	SIZES="$(or $(SIZES),100k,1M,5M)" $(BIN)/python -m bench.scale

eval: install
	OSML_DATASET_ROOTS="$(abspath $(dir $(UCI)))" $(BIN)/osml eval-uci --path "$(UCI)"

stack: install services
	$(BIN)/python infra/stack.py up

stack-down: install
	$(BIN)/python infra/stack.py down

clean:
	rm -rf .osml .pytest_cache .mypy_cache .ruff_cache
