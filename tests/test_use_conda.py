"""`snakemake --use-conda` through Snakemake's real conda code path, with a stand-in conda.

Snakemake copies each rule's env file to ``.snakemake/conda/<hash>.yaml``, runs
``conda env create --file <that copy> --prefix .snakemake/conda/<hash>`` and runs each job
after ``source <conda_prefix>/bin/activate <prefix>``; conda runs the env file's ``pip:``
section in the copy's folder. ``tests/support/fake_conda/bin/conda`` does the same for our
pip-based env files, offline (a venv that sees the project venv's packages, so pip finds every
pinned requirement satisfied). The tests show that envs/dfer.yaml builds from its copy, that the
jobs run with the env's python and this checkout's dfer, and that the old ``-e ..`` env file
fails the way conda fails on it. Plus static checks: no env file names a local path, and the
pip list of envs/dfer.yaml is pyproject.toml's dependencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from project_copy import copy_project

REPO = Path(__file__).resolve().parents[1]
FAKE_CONDA_BIN = REPO / "tests" / "support" / "fake_conda" / "bin"

# A tiny demo: 10 clips (2 folds), 2 shards of 4 frames at 32 px; one fold trained 1 epoch on
# video only, so the DAG is decode x2 -> train -> evaluate -> train_summary.
QUICK = {
    "dataset_defs": {"demo": {"num_shards": 2}},
    "decode": {"num_frames": 4, "size": 32},
    "train": {"runs": {"demo_tiny": {
        "device": "cpu", "folds": [1],
        "model": {"use_landmarks": False, "use_parsing": False, "use_captions": False},
        "data": {"num_frames": 4, "batch_size": 4, "num_workers": 0},
        "trainer": {"max_epochs": 1, "seed": 0},
    }}},
}


def pip_section(env_file: Path) -> list[str]:
    spec = yaml.safe_load(env_file.read_text(encoding="utf-8"))
    pips = [d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pips) == 1, env_file
    return [str(p) for p in pips[0]]


def conda_run(project: Path, *args: str, trace: Path | None = None) -> subprocess.CompletedProcess:
    """Snakemake in ``project`` with the fake conda first on PATH (and dfer not on PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CONDA_PREFIX")}
    env["PATH"] = os.pathsep.join([str(FAKE_CONDA_BIN), os.path.dirname(sys.executable),
                                   env.get("PATH", "")])
    # pip inside the fake envs resolves against the packages the env sees (the project venv)
    # and local wheels only: the test stays offline and its timing does not depend on an index.
    env["PIP_NO_INDEX"] = "1"
    if trace is not None:
        env["FAKE_CONDA_TRACE"] = str(trace)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--nocolor", "--use-conda", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )


def test_env_files_name_no_local_path() -> None:
    """conda runs a pip section in the folder of Snakemake's copy: nothing may be relative."""
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        for entry in pip_section(env_file):
            assert not entry.startswith(("-e", "-r", "-c", "--requirement", "--constraint",
                                         "--editable", ".", "/", "file:")), (env_file.name, entry)
            Requirement(entry)  # a plain requirement, nothing else


def test_dfer_env_pip_list_is_pyproject_dependencies() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    pips = pip_section(REPO / "envs" / "dfer.yaml")
    assert len(pips) == len(set(pips))
    assert sorted(map(str, map(Requirement, pips))) == sorted(map(str, map(Requirement, deps)))


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def test_vllm_env_pip_list_is_the_vllm_requirements_file() -> None:
    """envs/vllm.yaml (--use-conda) and scripts/setup_vllm_env.sh (CUDA) install the same."""
    pips = pip_section(REPO / "envs" / "vllm.yaml")
    reqs = requirement_lines(REPO / "envs" / "vllm-requirements.txt")
    assert sorted(map(str, map(Requirement, pips))) == sorted(map(str, map(Requirement, reqs)))


def test_use_conda_builds_the_env_from_its_copy_and_runs_jobs_in_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    copy_project(project, clips_per_class=2)
    (project / "config" / "quick.yaml").write_text(yaml.safe_dump(QUICK), encoding="utf-8")
    trace = tmp_path / "trace.jsonl"

    proc = conda_run(project, "--cores", "2", "--configfile=config/quick.yaml", "train_all",
                     trace=trace)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "Creating conda environment envs/dfer.yaml" in out

    # one env for every rule, created by the fake conda from Snakemake's copy of the file
    conda_dir = project / ".snakemake" / "conda"
    copies = sorted(conda_dir.glob("*.yaml"))
    assert len(copies) == 1
    assert copies[0].read_text() == (REPO / "envs" / "dfer.yaml").read_text()
    env = copies[0].with_suffix("")
    history = (env / "conda-meta" / "history").read_text()
    assert f'--file "{copies[0]}"' in history or f"--file {copies[0]}" in history
    assert copies[0].with_suffix(".env_setup_done").is_file()
    assert not list(conda_dir.glob("condaenv.*.requirements.txt"))  # conda's temp file, removed

    # every job ran the env's python on this checkout's dfer (put there by PYTHONPATH alone)
    rows = [json.loads(line) for line in trace.read_text().splitlines()]
    jobs = [r for r in rows if r["dfer"]]
    commands = {r["argv"][1] for r in jobs}
    assert {"decode", "train", "evaluate"} <= commands, commands
    for row in jobs:
        assert row["executable"] == str(env / "bin" / "python"), row
        assert Path(row["prefix"]) == env
        assert Path(row["dfer"]) == project / "src" / "dfer" / "__init__.py"

    results = project / "results" / "demo"
    for shard in ("000", "001"):
        assert (results / "frames" / f"shard-{shard}.safetensors").is_file()
    assert (results / "train" / "demo_tiny" / "fold-1" / "checkpoint.safetensors").is_file()
    assert json.loads((results / "train" / "demo_tiny" / "summary.json").read_text())["num_folds"] == 1


@pytest.mark.parametrize("pip_entry, side_file", [
    ("-e ..", None),                                          # envs/dfer.yaml before
    ("-r vllm-requirements.txt", "vllm-requirements.txt"),    # envs/vllm.yaml before
])
def test_env_file_with_a_relative_path_fails_as_conda_fails(
        tmp_path: Path, pip_entry: str, side_file: str | None) -> None:
    """The relative path resolves inside .snakemake/conda/, even where it exists beside envs/."""
    project = tmp_path / "project"
    copy_project(project, clips_per_class=1)
    env_file = project / "envs" / "dfer.yaml"
    env_file.write_text(
        "name: dfer\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n"
        f"  - pip:\n      - {pip_entry}\n", encoding="utf-8")
    if side_file:
        (project / "envs" / side_file).write_text("numpy\n", encoding="utf-8")

    proc = conda_run(project, "--cores", "1", "--conda-create-envs-only", "decode_all")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Could not create conda environment" in out and "Pip failed" in out, out[-3000:]
    conda_dir = project / ".snakemake" / "conda"
    if side_file:
        # pip reads `-r` relative to the requirements file conda wrote beside the copy
        assert f"No such file or directory: '{conda_dir / side_file}'" in out, out[-3000:]
    else:  # `..` of the copy: .snakemake/, which is no Python project
        assert f"{conda_dir.parent.as_uri()}" in out and "does not appear to be a Python project" in out, out[-3000:]
    assert [p for p in conda_dir.iterdir() if p.is_dir()] == []  # the broken env was removed
