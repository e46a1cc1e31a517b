# The contract commands: `make demo` (set up + run the main job on the embedded default),
# `make test` (set up + run the whole test suite) and `make lint` (ruff, mypy, import contracts;
# configured in pyproject.toml). `.ci/run` calls `make lint` then `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-unit test-integration system bench bench-quick lint clean gpu-bundle gpu-check

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

# The whole platform under load and faults (100 jobs; ARGS="--jobs 20" for less); tests/system.
system: setup
	./scripts/system.sh $(ARGS)

# Every benchmark in benchmarks/, one row per number with its target (bench-quick: < 15 min here).
bench: setup
	$(PY) benchmarks/run_all.py $(ARGS)

bench-quick: setup
	$(PY) benchmarks/run_all.py --quick $(ARGS)

# The GPU path in one command (scripts/gpu_check.py; docs/benchmarks.md "GPU"): on a GPU machine
# with the checkout and .whl/ (built here by `make gpu-bundle`), reports into $$OUT. ARGS="--device
# cpu" for the small CPU mode. Uses python3 where there is no .venv (the GPU machine has none).
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)

gpu-bundle: setup
	$(PY) scripts/gpu_bundle.py $(ARGS)

gpu-check:
	$(GPU_PY) scripts/gpu_check.py $(ARGS)

clean:
	rm -rf $(VENV) .cache out node_modules
