"""Shared fixtures: the repository root.

pytest puts this folder on ``sys.path`` (the tests are not a package), which is how tests
import the helpers beside them (``project_copy``, ``vllm_env``) and the fixtures under
``support/`` (``support.dataset``, ``support.videos``, ``support.tiny_qwen``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    """The checkout's root (for subprocesses that need ``src/`` on PYTHONPATH)."""
    return REPO
