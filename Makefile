# Two commands for a fresh machine with python3 (>= 3.11) and make:
#   make demo   - install only what the demo needs (extra "demo": a few packages) and run
#                 the web demo (HOST=127.0.0.1 PORT=8000 to change; WORKERS=4: four
#                 uvicorn workers sharing jobs through a local redis-server)
#   make test   - install and run lint, the import rules (lint-imports), types and the tests
#   make bench  - install the peers (extra "bench"), run the benchmark suite in bench/ and
#                 rewrite docs/streaming-report.md and docs/img/*.png from what it measured
#   make bench-quick (or BENCH_QUICK=1 make bench) - the same, short, into bench-results/quick/
#   make soak   - the soak and fault-injection suite (bench/soak/): every adapter and the
#                 peers on real servers, one table per scenario (about 7 minutes on 2 cores)
#   make soak-quick (or SOAK_QUICK=1 make soak) - the short version (under 2 minutes), as CI
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
BENCH_STAMP := $(VENV)/.bench-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
WORKERS ?= 1

.PHONY: demo tour test lint imports typecheck pytest bench bench-quick soak soak-quick clean

# Everything: the tools, every framework and server the tests run (and the demo's extra).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo]'
	touch $(STAMP) $(DEMO_STAMP)

# The demo alone: streamfx's own requirements and the extra "demo", read from
# pyproject.toml; streamfx itself runs from this checkout (python -m examples.demo), so
# nothing is built (no pip upgrade, no test tools). The virtualenv is made without pip
# when $(PYTHON) has a pip that can install into it (--python): unpacking pip into a new
# virtualenv costs more than the demo's packages; `make test` adds pip later. No .pyc
# files up front (--no-compile): the demo compiles the modules it imports, no more.
DEMO_REQUIREMENTS := import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	print(*p["dependencies"], *p["optional-dependencies"]["demo"], sep="\n")
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	$(BIN)/python -c '$(DEMO_REQUIREMENTS)' > $(VENV)/demo-requirements.txt
	if test -x $(BIN)/pip; then pip="$(BIN)/pip"; \
	elif $(PYTHON) -m pip --python $(BIN)/python --version >/dev/null 2>&1; then \
		pip="$(PYTHON) -m pip --python $(BIN)/python"; \
	else $(BIN)/python -m ensurepip --default-pip >/dev/null && pip="$(BIN)/pip"; fi; \
	$$pip install --quiet --disable-pip-version-check --no-compile -r $(VENV)/demo-requirements.txt
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python -m examples.demo --host $(HOST) --port $(PORT) --workers $(WORKERS)

tour: $(DEMO_STAMP)
	$(BIN)/python -m examples.combinators_demo

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
