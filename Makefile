# The contract commands: `make demo` (set up + run the main job on the embedded default),
# `make test` (set up + run the whole test suite) and `make lint` (ruff, mypy, import contracts;
# configured in pyproject.toml). `.ci/run` calls `make lint` then `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-unit test-integration lint clean

setup:
	./scripts/setup.sh

demo: setup
	./scripts/demo.sh

test: setup
	$(PY) -m pytest tests

test-unit: setup
	$(PY) -m pytest tests/unit

test-integration: setup
	$(PY) -m pytest tests/integration tests/e2e

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .cache out node_modules
