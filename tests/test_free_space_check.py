"""scripts/require_free_space.sh: the check both venv builds run before installing anything."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "require_free_space.sh"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "DFER_SKIP_SPACE_CHECK"}
    full_env.update(env)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=full_env, check=False)


def test_more_than_the_disk_holds_is_refused_with_the_numbers(tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet" / "venv"
    free_gib = shutil.disk_usage(tmp_path).free / 2**30
    need = int(shutil.disk_usage(tmp_path).total / 2**30) + 1  # more than the whole disk
    result = _run(str(target), str(need), "the vLLM environment")
    assert result.returncode == 1
    assert f"the vLLM environment needs about {need} GiB free in {target}" in result.stderr
    reported = float(result.stderr.split("its file system has ")[1].split(" GiB")[0])
    assert abs(reported - free_gib) < 1.0  # df's figure, measured on the nearest folder that exists
    assert not target.parent.exists()  # the check creates nothing


def test_enough_space_passes_and_the_skip_switch_skips(tmp_path: Path) -> None:
    assert _run(str(tmp_path / "venv"), "0", "x").returncode == 0
    huge = str(10**6)
    assert _run(str(tmp_path), huge, "x").returncode == 1
    assert _run(str(tmp_path), huge, "x", DFER_SKIP_SPACE_CHECK="1").returncode == 0


def test_a_wrong_call_is_a_usage_error() -> None:
    result = _run("/tmp", "8")
    assert result.returncode == 2 and "usage:" in result.stderr


def test_both_venv_builds_run_the_check() -> None:
    assert "scripts/require_free_space.sh $(VENV)" in (REPO / "Makefile").read_text()
    setup = (REPO / "scripts" / "setup_vllm_env.sh").read_text()
    check = setup.index("require_free_space.sh")
    assert setup.index('rm -rf "$venv"') < check < setup.index('-m venv "$venv"')
