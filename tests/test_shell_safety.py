"""Rules are safe for any results path and refuse unsafe names (issue 24, item 1).

A ``results`` path holding a space, ``$(...)``, backticks and a quote either works with
nothing executed, or parsing stops naming the key. Dataset and run names are restricted
to a documented pattern (letters, digits, ``_ . -``) when the Snakefile is parsed.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from project_copy import copy_project

#: Every kind of character that a shell reads as syntax, each of which would create a file
#: named PWNED* in the project if it reached a shell unquoted.
NASTY = "r e$(touch PWNED1)`touch PWNED2`'q\"$HOME;touch PWNED3"


def snakemake(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", "--cores", "2", *args],
                          cwd=project, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    dest = tmp_path_factory.mktemp("shell") / "project"
    cfg = copy_project(dest, clips_per_class=1, sync=False)
    cfg["results"] = NASTY
    cfg["decode"].update(num_frames=2, size=32)
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest, cfg


def pwned(project: Path) -> list[str]:
    return sorted(str(p.relative_to(project)) for p in project.rglob("PWNED*"))


def test_every_command_keeps_the_results_path_one_word(project):
    """Each shell command of the whole workflow, as Snakemake would run it: wherever the
    results path occurs, it is inside one shell word holding it whole."""
    dest, _ = project
    proc = snakemake(dest, "-n", "-p", "--forceall")
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands = [line[len("Shell command: "):] for line in (proc.stdout + proc.stderr).splitlines()
                if line.startswith("Shell command: ") and line != "Shell command: None"]
    assert len(commands) > 10
    for command in commands:
        try:
            words = shlex.split(command.replace(">(", "( "))  # bash process substitution
        except ValueError as exc:  # an unquoted quote in the path unbalances the command
            pytest.fail(f"{exc}: {command}")
        assert any(NASTY in w for w in words), command
        for word in words:
            if "PWNED" in word or "r e" in word:
                assert word.startswith(NASTY), (word, command)
    assert pwned(dest) == []


def test_decode_runs_with_a_hostile_results_path_and_executes_nothing(project):
    dest, _ = project
    proc = snakemake(dest, "decode_all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = dest / NASTY / "demo" / "frames"
    ids = [i for s in range(4) for i in pq.read_table(frames / f"shard-{s:03d}.parquet").column("clip_id").to_pylist()]
    assert len(ids) == 5  # every clip decoded under the literal path
    assert (dest / NASTY / "demo" / "logs" / "decode" / "shard-000.log").is_file()
    assert pwned(dest) == []  # no command ran
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [".snakemake", "Snakefile", "config", "data", "envs", "src", "workflow", NASTY])  # no stray file


@pytest.mark.parametrize("where, name", [
    ("datasets", "my data"), ("datasets", "d$(touch PWNED4)"), ("datasets", "d`touch PWNED5`"),
    ("datasets", "d'q"), ("runs", "run $(touch PWNED6)"), ("runs", "r`x`"),
])
def test_unsafe_dataset_and_run_names_stop_parsing_naming_the_key(project, where, name):
    from dfer.config_check import config_problem

    dest, cfg = project
    cfg = yaml.safe_load(yaml.safe_dump(cfg))
    if where == "datasets":
        cfg["dataset_defs"][name] = cfg["dataset_defs"]["demo"]
        cfg["datasets"] = ["demo", name]
        key = "config error at datasets.1"
    else:
        cfg["train"]["runs"][name] = cfg["train"]["runs"]["demo_tiny"]
        key = f"config error at train.runs.{name}"
    problem = config_problem(cfg, dest / "workflow" / "schemas" / "config.schema.yaml")
    assert problem is not None and problem.startswith(key), problem
    assert "letters, digits, '_', '.' and '-'" in problem


def test_snakemake_refuses_an_unsafe_dataset_name_in_one_line(project, tmp_path):
    dest, cfg = project
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(yaml.safe_dump({
        "datasets": ["demo", "x$(touch PWNED7)"],
        "dataset_defs": {"x$(touch PWNED7)": cfg["dataset_defs"]["demo"]}}))
    proc = snakemake(dest, "-n", f"--configfile={overlay}")
    assert proc.returncode != 0
    assert f"config error at datasets.1 (set in {overlay}): 'x$(touch PWNED7)' is not allowed" in (
        proc.stdout + proc.stderr)
    assert pwned(dest) == []
