# Two commands for a fresh machine with python3 (>= 3.11) and make:
#   make demo   - install and run the web demo (HOST=127.0.0.1 PORT=8000 to change;
#                 WORKERS=4: four uvicorn workers sharing jobs through a local redis-server)
#   make test   - install and run lint, the import rules (lint-imports), types and the tests
#   make bench  - install the peers (extra "bench"), run the benchmark suite in bench/ and
#                 rewrite docs/streaming-report.md and docs/img/*.png from what it measured
#   make bench-quick (or BENCH_QUICK=1 make bench) - the same, short, into bench-results/quick/
#   make soak   - the soak and fault-injection suite (bench/soak/): every adapter and the
#                 peers on real servers, one table per scenario (under 10 minutes on 2 cores)
#   make soak-quick (or SOAK_QUICK=1 make soak) - the short version (a minute or two), as CI
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
WORKERS ?= 1

.PHONY: demo tour test lint imports typecheck pytest bench bench-quick soak soak-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo --host $(HOST) --port $(PORT) --workers $(WORKERS)

tour: $(STAMP)
	$(BIN)/python examples/combinators_demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The layer rule of docs/architecture.md (contracts in pyproject.toml).
imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint imports typecheck pytest

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.suite

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench.suite --quick

soak: $(BENCH_STAMP)
	$(BIN)/python -m bench.soak

soak-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench.soak --quick

clean:
	rm -rf $(VENV) build *.egg-info bench-results
