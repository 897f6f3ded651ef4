# creditshare: the same commands locally and in CI.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_WORKERS ?= auto

.PHONY: run test check lint typecheck unit openapi openapi-check bench install install-dev seed clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)
install-dev: $(STAMP)

## make run: set everything up and serve the API on the embedded default (SQLite).
# The issuer is where it is served (HOST, PORT; 127.0.0.1 when bound to every interface),
# unless CREDITSHARE_PUBLIC_URL says otherwise.
run: export CREDITSHARE_PUBLIC_URL ?= http://$(if $(filter 0.0.0.0,$(HOST)),127.0.0.1,$(HOST)):$(PORT)
run: $(RUN_STAMP)
	$(BIN)/creditshare db upgrade
	$(BIN)/creditshare demo seed --merchants 2000 --if-empty
	$(BIN)/creditshare demo client
	$(BIN)/creditshare serve --host $(HOST) --port $(PORT)

## make test: quality gates, then the whole suite (SQLite, and PostgreSQL/Redis when configured).
test: check unit

check: $(STAMP) lint typecheck openapi-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS)

openapi: $(STAMP)
	$(BIN)/creditshare openapi export

openapi-check: $(STAMP)
	@$(BIN)/creditshare openapi export --out $(VENV)/openapi.check.json >/dev/null
	@diff -q openapi/openapi.json $(VENV)/openapi.check.json >/dev/null || \
		(echo "openapi/openapi.json is out of date: run 'make openapi'"; exit 1)

bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || echo "install wrk for the load benchmarks")
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var
