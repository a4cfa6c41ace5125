# Everything runs from a virtualenv this Makefile creates in .venv with the
# machine's python3 (3.11 or newer); nothing is installed outside it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

demo: $(BIN)/pip
	$(BIN)/pip install --quiet -e .
	$(BIN)/segpipe demo --output demo-output --overwrite

test: $(BIN)/pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(MAKE) lint
	$(BIN)/python -m pytest -n auto  # one test process per core

lint:
	$(BIN)/ruff check pipeline tests benchmarks workflows
	$(BIN)/ruff format --check pipeline tests benchmarks workflows
	$(BIN)/mypy pipeline

bench: $(BIN)/pip
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_label.py

clean:
	rm -rf $(VENV) demo-output benchmarks/_work
