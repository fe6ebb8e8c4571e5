# osml — every target installs what it needs itself (a fresh clone needs only python3.11 and make).
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UCI ?= ../shared/data/uci-incident-event-log/incident_event_log.zip

.PHONY: help install up test lint typecheck unit bench eval stack stack-down services clean

help:
	@echo "make up          train on bundled synthetic data if the registry is empty, then serve (embedded)"
	@echo "make test        lint, typecheck and the whole test suite (starts PostgreSQL/RabbitMQ if down)"
	@echo "make bench       facade vs 'mlflow models serve', batch vs in-process, end-to-end events"
	@echo "make eval        real-data quality report on the UCI event log (UCI=path)"
	@echo "make stack       local production-shaped stack (tracking server on Postgres + S3, facade, worker, relay)"
	@echo "make stack-down  stop exactly what 'make stack' started"

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/osml up

services:
	@bash infra/ensure-services.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy osml training serving worker

unit: install
	$(BIN)/pytest -m "unit or contract" -q

test: install services lint typecheck
	$(BIN)/pytest -q

bench: install services
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; } || { echo "wrk is needed (Debian package 'wrk')"; exit 1; }
	$(BIN)/python -m bench.run

eval: install
	OSML_DATASET_ROOTS="$(abspath $(dir $(UCI)))" $(BIN)/osml eval-uci --path "$(UCI)"

stack: install services
	$(BIN)/python infra/stack.py up

stack-down: install
	$(BIN)/python infra/stack.py down

clean:
	rm -rf .osml .pytest_cache .mypy_cache .ruff_cache
