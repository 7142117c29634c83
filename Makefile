# segmentation_dagster — the commands a newcomer guesses right.
#   make run    install; a demo shop: the main job on 90 days of history, then 17 days of daily
#               refreshes with a behaviour shift the drift sensor acts on; print the timeline
#   make test   install and run the test suite (real DuckDB, dbt, GX, Evidently on small data)
#   make test-fast  the unit tests and small integration tests (no whole-pipeline, subprocess,
#               replay or benchmark tests): under 2 minutes
#   make ui     Dagster UI on http://127.0.0.1:3000 (shows the runs `make run` made)
#   make lint   ruff, and `dg check defs` (the Definitions load)
#   make bench  the platform's full loop vs a hand-written baseline (BENCH_ARGS="--events ...")
#   make adapt  how fast segments follow behaviour: every scenario replayed day by day
#   make install-spark  also the Spark extra (dbt-spark, pyspark) and, where `java` is
#               missing, Debian's OpenJDK 17: the dbt project then runs on local Spark too
SHELL := /bin/bash
.DEFAULT_GOAL := help

# the interpreter itself, not a version manager's shim: uv compares it with the env's and would
# otherwise recreate .venv on every sync
# (resolved once, before PATH below puts .venv/bin first)
ifndef PYTHON
PYTHON := $(shell for p in python3.11 python3; do command -v $$p > /dev/null && \
	$$p -c 'import sys; print(sys.executable)' && break; done)
endif
ifeq ($(PYTHON),)
$(error no python3.11 or python3 on PATH)
endif
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

.PHONY: help install install-spark run ui test test-fast lint bench adapt value clean

help:
	@sed -n '2,12p' Makefile | sed 's/^# *//'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

# the virtual env, exactly as locked, with its bytecode compiled once here: where
# PYTHONDONTWRITEBYTECODE is set, every process (each `segmentation run`, each test subprocess)
# otherwise recompiles dagster & co. from source when it imports them
# (with the Spark extra once `make install-spark` has asked for it: a plain sync would remove it)
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON) \
		$(if $(wildcard $(VENV)/.spark),--extra spark)
	@touch $@

# dbt's manifest is prepared here, at build time, never at import
$(MANIFEST): $(VENV)/.synced $(DBT_SOURCES)
	$(BIN)/dagster-dbt project prepare-and-package --file segmentation_dagster/defs/transform/project.py
	@touch $@

# the instance's SQLite storage is created here, by one process: processes that open a fresh
# instance at the same time race on its schema migration
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml $(VENV)/.synced
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@
	$(BIN)/dagster instance migrate > /dev/null

install: $(VENV)/.synced $(MANIFEST) $(DAGSTER_HOME)/dagster.yaml

# local Spark (dbt-spark `method: session`) needs Java 17 or later: Debian's default JRE where
# the machine has none or an older one, then the Spark extra in the same env (remembered by
# .venv/.spark, which later syncs keep)
install-spark: install $(VENV)/.spark

$(VENV)/.spark: $(VENV)/.synced
	@java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])' || { \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			default-jre-headless; }
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON) --extra spark
	@touch $@

# the replay delivers the demo's day files one by one into data/landing (it refuses files it
# did not deliver) and continues where it stopped when re-run; delete data/ to start over
run: install
	$(BIN)/segmentation replay

# the UI, and beside it the report folder on port 3001 (the Evidently and GX reports' links)
ui: install
	$(BIN)/segmentation ui

# a real browser for the UI test (tests/test_ui.py): Debian's chromium (a test tool's own
# browser download does not work on these machines)
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

# the full suite includes the Spark tests: their extra and a Java runtime are installed first,
# and a machine where Spark still cannot start fails them rather than skipping them
test: install-spark $(CHROMIUM)
	SEGMENTATION_REQUIRE_SPARK=1 $(BIN)/pytest

# the slow tests are marked `slow` (pyproject.toml); CI runs the full `make test`
test-fast: install
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

BENCH_ARGS ?= --events 1000000 --customers 100000
bench: install $(if $(findstring spark,$(BENCH_ARGS)),install-spark)
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)

ADAPT_ARGS ?=
adapt: install
	$(BIN)/python -m benchmarks.adapt $(ADAPT_ARGS)

value: install
	$(BIN)/python -m benchmarks.value

clean:
	rm -rf data $(DAGSTER_HOME) dbt_project/target dbt_project/logs
