# Two commands that work on a fresh machine:
#   make demo   - runs the bridge on its embedded default (both simulators, SQLite outbox, no credentials)
#   make test   - runs the whole test suite
#   make test-repeat RUNS=5 PARALLEL=2 - the reliability check (docs/testing.md)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-repeat lint typecheck check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/gcbridge demo

test: $(STAMP)
	bash scripts/test-prereqs.sh
	$(BIN)/pytest -q

# The whole suite RUNS times in a row, PARALLEL copies at once, each as a background job (SIGINT ignored).
RUNS     ?= 5
PARALLEL ?= 1
test-repeat: $(STAMP)
	bash scripts/test-prereqs.sh
	bash scripts/test-repeat.sh $(RUNS) $(PARALLEL) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
