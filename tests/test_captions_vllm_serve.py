"""The ``openai`` captions backend against a real ``vllm serve`` of a tiny random Qwen2.5-VL.

tests/test_captions_openai.py drives the client against a scripted HTTP server; this test
checks the other half of the contract: what vLLM's own OpenAI-compatible server accepts and
answers (JPEG data URLs as images and as vLLM's ``data:video/jpeg`` video, the ``seed`` and
``usage`` fields). The server runs from the separate vLLM environment on 127.0.0.1 (a free
port, CPU, small settings) and is shut down whatever happens. Like test_captions_vllm.py, a
missing vLLM environment fails the test unless ``DFER_ALLOW_NO_VLLM=1``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from captions_data import animate, write_shard
from support.ports import free_port
from vllm_env import VLLM_ENV, build_tiny_model, require_vllm_python

from dfer.captions.base import ClipInput
from dfer.captions.config import CaptionsConfig
from dfer.captions.openai_client import OpenAIDescriber
from dfer.captions.shard import run_shard
from dfer.core.artifacts import read_meta, read_parquet

SERVED_NAME = "tiny-qwen2.5-vl"
#: Bound on the server's start (imports, model load, warm-up) on a 2-core CPU machine.
START_TIMEOUT_S = 300.0
MAX_TOKENS = 10


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (API server, engine core), then SIGKILL it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived the leader
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory) -> Iterator[str]:
    """``http://127.0.0.1:<port>/v1`` of a running ``vllm serve`` of the tiny model."""
    python = require_vllm_python()
    root = tmp_path_factory.mktemp("vllm-serve")
    model = build_tiny_model(python, root / "tiny-qwen2.5-vl")
    port = free_port()
    log = root / "server.log"
    cmd = [python, "-m", "vllm.entrypoints.cli.main", "serve", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--served-model-name", SERVED_NAME,
           "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
           "--gpu-memory-utilization", "0.1", "--max-num-seqs", "4", "--seed", "0",
           "--limit-mm-per-prompt", '{"image": 4, "video": 1}']
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                env={**os.environ, **VLLM_ENV}, start_new_session=True)
    try:
        t0 = time.perf_counter()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with status {proc.returncode} before it was "
                            f"healthy; last lines of {log}:\n{_tail(log)}", pytrace=False)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200:
                    break
            if time.perf_counter() - t0 > START_TIMEOUT_S:
                pytest.fail(f"vllm serve not healthy after {START_TIMEOUT_S:.0f} s; last lines "
                            f"of {log}:\n{_tail(log)}", pytrace=False)
            time.sleep(1.0)
        print(f"vllm serve healthy after {time.perf_counter() - t0:.1f} s")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


def _params(base_url: str, input_mode: str) -> dict:
    return {"backend": "openai", "num_frames": 4, "max_tokens": MAX_TOKENS, "seed": 3,
            "openai": {"base_url": base_url, "model": SERVED_NAME, "input": input_mode,
                       "timeout_s": 120.0, "max_retries": 0, "max_concurrency": 2}}


def test_served_model_is_listed(vllm_server):
    models = httpx.get(f"{vllm_server}/models", timeout=10.0).json()
    assert [m["id"] for m in models["data"]] == [SERVED_NAME]


def test_openai_backend_captions_a_shard_through_vllm_serve(vllm_server, tmp_path):
    ids = ["c0", "c1", "c2", "nofr"]
    paths = write_shard(tmp_path, {i: animate("mouth_open") for i in ids}, frames_missing=("nofr",),
                        identical_frames=True)
    params = _params(vllm_server, "images")
    summary = run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                        paths["failures"], params)
    fails = read_parquet(paths["failures"])
    assert list(fails["clip_id"]) == ["nofr"], fails.to_dict("records")
    assert fails["error_type"].iloc[0] == "missing_frames"
    assert summary["clips"] == 3 and summary["failed_clips"] == 1
    df = read_parquet(paths["out"])
    assert list(df["clip_id"]) == ["c0", "c1", "c2"]
    assert set(df["backend"]) == {"openai"} and set(df["model"]) == {SERVED_NAME}
    # random weights never emit EOS (tiny_model masks the head to letters): the server's
    # usage block counts exactly max_tokens completion tokens per clip
    assert set(df["num_tokens"]) == {MAX_TOKENS}
    assert df["raw_text"].str.strip().str.len().gt(0).all()
    assert set(df["raw_text"].str.replace(r"[a-z. ]", "", regex=True)) == {""}
    # identical frames, temperature 0 and a fixed seed: identical answers, even concurrently
    assert df["raw_text"].nunique() == 1
    cfg = CaptionsConfig.from_params(params)
    assert set(df["prompt_hash"]) == {cfg.prompt_hash()}
    meta = read_meta(paths["out"])
    assert meta["backend"] == "openai" and meta["clips"] == 3


def test_video_input_and_repeated_requests_answer_identically(vllm_server):
    cfg = CaptionsConfig.from_params(_params(vllm_server, "video"))
    client = OpenAIDescriber(cfg.raw["openai"], cfg.sampling())
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8) for _ in range(2))
    clips = [ClipInput("a1", frames=a), ClipInput("b", frames=b), ClipInput("a2", frames=a)]
    first = client.describe(clips, "Describe the facial expression.")
    again = client.describe(clips, "Describe the facial expression.")
    assert all(d.ok for d in first + again), [(d.error_type, d.message) for d in first + again]
    assert {d.num_tokens for d in first + again} == {MAX_TOKENS}
    assert first[0].text == first[2].text  # same frames, same answer
    assert [d.text for d in again] == [d.text for d in first]  # and the same on a second call
