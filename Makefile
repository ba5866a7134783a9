# Two commands do all the set-up (see README):
#   make demo   create .venv if needed, then run the whole pipeline on the demo data
#   make test   create .venv if needed, then run the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: venv demo test lint bench clean-results

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/snakemake --cores all

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check src tests benchmarks workflow

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean-results:
	rm -rf results .snakemake
