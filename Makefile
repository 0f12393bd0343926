# Aeraki in Python — developer entry points. `make test` works on a fresh Debian 12 machine:
# it installs what is missing (scripts/setup.sh, idempotent via stamps in .tools/) and runs
# lint, format check, type check and the whole pytest suite.
SHELL := /bin/bash
.DEFAULT_GOAL := test

VENV   := .venv
PY     := $(VENV)/bin/python
RUFF   := $(VENV)/bin/ruff
MYPY   := $(VENV)/bin/mypy
PYTEST := $(PY) -m pytest
PYDIRS := src tests examples benchmarks scripts

.PHONY: setup lint format typecheck unit integration test demo bench fuzz soak clean

setup:
	@bash scripts/setup.sh

lint: setup
	$(RUFF) check $(PYDIRS)
	$(RUFF) format --check $(PYDIRS)

format: setup
	$(RUFF) check --fix $(PYDIRS)
	$(RUFF) format $(PYDIRS)

typecheck: setup
	$(MYPY)

unit: setup
	$(PYTEST) -q -m "not integration"

integration: setup
	$(PYTEST) -q -m integration

test: setup
	$(RUFF) check $(PYDIRS)
	$(RUFF) format --check $(PYDIRS)
	$(MYPY)
	$(PYTEST) -q

demo: setup
	@if [ -x scripts/demo.sh ] || [ -f scripts/demo.sh ]; then bash scripts/demo.sh; \
	else echo "scripts/demo.sh not written yet"; exit 1; fi

bench: setup
	@if [ -f scripts/bench.sh ]; then bash scripts/bench.sh; \
	else echo "scripts/bench.sh not written yet"; exit 1; fi

# Long codec fuzzing: FUZZ_INPUTS per codec (default 1,000,000), FUZZ_SECONDS time bound.
fuzz: setup
	$(PY) -m benchmarks.fuzz

# Mixed Thrift + Dubbo load under route changes and host kills: SOAK_SECONDS (default 600).
soak: setup
	$(PY) -m benchmarks.soak

clean:
	rm -rf .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
	find . -path ./.venv -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
