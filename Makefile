# Two commands for a fresh machine with python3 (>= 3.11) and make:
#   make demo   - install and run the web demo (HOST=127.0.0.1 PORT=8000 to change)
#   make test   - install and run lint, types and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: demo tour test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo --host $(HOST) --port $(PORT)

tour: $(STAMP)
	$(BIN)/python examples/combinators_demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m pytest bench -q --benchmark-enable -p no:randomly

clean:
	rm -rf $(VENV) build *.egg-info
