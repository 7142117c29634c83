# segmentation_dagster — the commands a newcomer guesses right.
#   make run    install, generate demo data if nothing landed, run the main job, print a summary
#   make test   install and run the test suite (real DuckDB, dbt, GX, Evidently on small data)
#   make replay day-by-day operation on a demo with a behaviour shift: drift -> re-segmentation
#   make ui     Dagster UI on http://127.0.0.1:3000 (shows the runs `make run` made)
#   make lint   ruff
#   make bench  the platform's full loop vs a hand-written baseline (BENCH_ARGS="--events ...")
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project -path dbt_project/target -prune -o -type f \( -name '*.sql' -o -name '*.yml' \) -print)

export DAGSTER_HOME := $(CURDIR)/.dagster_home
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: help install run replay ui test lint bench clean

help:
	@sed -n '2,7p' Makefile | sed 's/^# *//'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

# the virtual env, exactly as locked
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

# dbt's manifest is prepared here, at build time, never at import
$(MANIFEST): $(VENV)/.synced $(DBT_SOURCES)
	$(BIN)/dagster-dbt project prepare-and-package --file segmentation_dagster/defs/transform/project.py
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

install: $(VENV)/.synced $(MANIFEST) $(DAGSTER_HOME)/dagster.yaml

run: install
	$(BIN)/segmentation run

# its own data folder: the replay delivers day files one by one into an empty landing folder
replay: install
	SEGMENTATION_DATA_DIR=$${SEGMENTATION_DATA_DIR:-data/replay} $(BIN)/segmentation replay

ui: install
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

BENCH_ARGS ?= --events 1000000 --customers 100000
bench: install
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)

clean:
	rm -rf data $(DAGSTER_HOME) dbt_project/target dbt_project/logs
