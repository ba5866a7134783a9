"""Locating the separate vLLM environment for the tests that need it, failing when it is absent.

The vLLM tests are part of ``make test``: ``make vllm-env`` builds the environment (and fails
when it cannot), so a missing environment here is an error, not a reason to skip. Only with
``DFER_ALLOW_NO_VLLM=1`` (a machine that cannot build vLLM) do these tests skip, saying why.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dfer.captions.config import vllm_python

REPO = Path(__file__).resolve().parents[1]

#: Environment of every subprocess run with the vLLM interpreter (CPU-friendly settings).
VLLM_ENV = {"PYTHONPATH": str(REPO / "src"), "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "VLLM_CPU_OMP_THREADS_BIND": "nobind"}

HOW_TO_BUILD = ("build it with `make vllm-env` (scripts/setup_vllm_env.sh --cpu), or point "
                "DFER_VLLM_PYTHON / DFER_VLLM_VENV at one; set DFER_ALLOW_NO_VLLM=1 to skip "
                "the vLLM tests on a machine that cannot build it")


def allow_missing() -> bool:
    return os.environ.get("DFER_ALLOW_NO_VLLM", "") == "1"


def missing(reason: str) -> None:
    """Fail the test (skip it only when DFER_ALLOW_NO_VLLM=1) because vLLM is unusable."""
    if allow_missing():
        pytest.skip(f"{reason} (DFER_ALLOW_NO_VLLM=1)")
    pytest.fail(f"{reason}: {HOW_TO_BUILD}", pytrace=False)


def run_vllm_python(python: str, args: list[str], timeout: int = 300,
                    env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python args`` (the vLLM interpreter) with ``src/`` on PYTHONPATH."""
    full_env = {**os.environ, **VLLM_ENV, **(env or {})}
    return subprocess.run([python, *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, check=False)


def require_vllm_python() -> str:
    """The vLLM environment's interpreter, after checking that it imports vllm."""
    python = vllm_python({})
    if python is None:
        missing("no vLLM environment")
    probe = run_vllm_python(python, ["-c", "import vllm, torchvision"], timeout=180)
    if probe.returncode != 0:
        missing(f"{python} cannot import vllm and torchvision: "
                f"{probe.stderr.strip().splitlines()[-1:]}")
    return python


def build_tiny_model(python: str, out: Path) -> Path:
    """Write the tiny random Qwen2.5-VL (tests/support/tiny_qwen.py) to ``out``.

    The fixture lives under tests/, not in the library, so this one run also has ``tests/``
    on PYTHONPATH.
    """
    code = ("import sys; from support.tiny_qwen import build_tiny_qwen2_5_vl; "
            "build_tiny_qwen2_5_vl(sys.argv[1])")
    pythonpath = os.pathsep.join([VLLM_ENV["PYTHONPATH"], str(REPO / "tests")])
    proc = run_vllm_python(python, ["-c", code, str(out)], env={"PYTHONPATH": pythonpath})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
