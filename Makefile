# Two commands on a fresh clone: `make run` (the main job on local sample data) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-ui ui bench lint format clean node-deps system-deps

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq -e '.[dev]'
	@touch $(STAMP)

# Node tools for tests (Azurite, the Azure Storage emulator), installed into node_modules/.
node_modules/.bin/azurite-blob: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node-deps: node_modules/.bin/azurite-blob

# Chromium and PostgreSQL from Debian's packages, when missing.
system-deps:
	@scripts/install-system-deps.sh

run: $(STAMP)
	$(BIN)/biodiv main

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint node-deps system-deps
	$(BIN)/pytest -q -m "not ui"
	@if [ -x /usr/bin/chromium ]; then $(MAKE) --no-print-directory test-ui; \
	else echo "UI test not run: /usr/bin/chromium is missing (apt-get install chromium)"; fi

test-ui: $(STAMP)
	$(BIN)/pytest -q -m ui

# Dagster UI and MLflow UI ports: make ui PORT=3001 MLFLOW_PORT=5001
PORT ?= 3000
MLFLOW_PORT ?= 5000
ui: $(STAMP)
	$(BIN)/biodiv ui --port $(PORT) --mlflow-port $(MLFLOW_PORT)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf .biodiv
