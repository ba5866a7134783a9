"""Check that a vLLM environment runs what the captions stage needs; exit 1 if it does not.

Run with the vLLM environment's interpreter and ``src/`` on ``PYTHONPATH`` (that is how the
captions rule and the tests run it)::

    PYTHONPATH=src VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_OMP_THREADS_BIND=nobind \\
        $VENV/bin/python scripts/check_vllm_env.py [--device cpu]

``scripts/setup_vllm_env.sh`` runs it before writing the ``.installed`` marker, so that a
half-working environment (e.g. a torchvision whose C++ ops do not match torch:
``operator torchvision::nms does not exist``) is never taken for a built one. It checks, in
order: the imports (torch, torchvision and its ops, transformers, vllm), the ``vllm`` command
line (what ``vllm serve`` runs), building the tiny random Qwen2.5-VL model
(``tests/support/tiny_qwen.py``, put on ``sys.path`` by this script), loading its processor with ``AutoProcessor`` and running it on
a short video, and one small ``generate`` through ``vllm.LLM`` via the captions stage's own
:class:`~dfer.captions.vllm_backend.VLLMDescriber`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _step(name: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        out = fn()
    except BaseException:  # noqa: BLE001 - report any failure of the step, then stop
        traceback.print_exc()
        print(f"check_vllm_env: FAILED at step '{name}'", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"check_vllm_env: ok  {name} ({time.perf_counter() - t0:.1f} s)"
          + (f": {out}" if isinstance(out, str) else ""), flush=True)
    return out


def _imports() -> str:
    import torch
    import torchvision
    import transformers
    import vllm

    # torchvision imports lazily; its compiled ops are what break when its build does not
    # match torch's (a CUDA torchvision beside a CPU-only torch).
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.1]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0], keep
    return (f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"transformers {transformers.__version__}, vllm {vllm.__version__}")


def _cli() -> str:
    """``vllm --version``: the CLI that ``vllm serve`` (the openai backend's server) runs."""
    exe = Path(sys.executable).parent / "vllm"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"{exe} --version failed:\n{proc.stderr[-2000:]}"
    return proc.stdout.strip().splitlines()[-1]


def _processor(model_dir: str) -> str:
    import numpy as np
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(model_dir)
    video = np.random.default_rng(0).integers(0, 256, (2, 56, 56, 3), dtype=np.uint8)
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}],
        tokenize=False, add_generation_prompt=True)
    out = proc(text=[text], videos=[video], return_tensors="pt", do_sample_frames=False)
    assert out["pixel_values_videos"].shape[0] > 0
    return f"{type(proc).__name__}, video grid {out['video_grid_thw'].tolist()}"


def _generate(model_dir: str, device: str) -> str:
    import numpy as np

    from dfer.captions.base import ClipInput
    from dfer.captions.config import CaptionsConfig
    from dfer.captions.vllm_backend import VLLMDescriber

    params = {
        "backend": "vllm", "num_frames": 2, "max_tokens": 4, "device": device,
        "vllm": {"model": model_dir, "input": "video", "dtype": "float32",
                 "max_model_len": 1024, "enforce_eager": True, "gpu_memory_utilization": 0.1,
                 "engine_args": {"max_num_seqs": 2}},
    }
    cfg = CaptionsConfig.from_params(params)
    describer = VLLMDescriber(cfg.raw["vllm"], cfg.sampling())
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    try:
        [desc] = describer.describe([ClipInput("check", frames=frames)], "Describe the face.")
    finally:
        describer.close()
    assert desc.ok, f"{desc.error_type}: {desc.message}"
    assert desc.num_tokens == 4, desc
    return f"{desc.num_tokens} tokens: {desc.text!r}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    args = ap.parse_args(argv)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if args.device == "cpu":
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    t0 = time.perf_counter()
    _step("imports", _imports)
    _step("vllm CLI", _cli)
    # the tiny model is a test fixture (tests/support/), not part of the library on PYTHONPATH
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    with tempfile.TemporaryDirectory(prefix="dfer-vllm-check-") as tmp:
        from support.tiny_qwen import build_tiny_qwen2_5_vl

        model_dir = str(_step("tiny Qwen2.5-VL model", lambda: build_tiny_qwen2_5_vl(tmp)))
        _step("AutoProcessor", lambda: _processor(model_dir))
        _step("vllm.LLM generate", lambda: _generate(model_dir, args.device))
    print(f"check_vllm_env: all checks passed in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
