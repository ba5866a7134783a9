"""The train / evaluate / summary / zero-shot rules on a copy of the demo project."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from project_copy import copy_project

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Workflow copy with a two-clips-per-class demo dataset (2 folds), manifests synced."""
    dest = tmp_path_factory.mktemp("trainwf") / "project"
    copy_project(dest, clips_per_class=2, sync=True)
    return dest


def snakemake(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", *args], cwd=project,
                          capture_output=True, text=True, timeout=600)


def jobs(output: str) -> dict[str, list[str]]:
    """rule name -> the text block of each of its jobs in a dry run's listing."""
    out: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=rule \w+:)", output):
        head = re.match(r"rule (\w+):", block)
        if head:
            out.setdefault(head.group(1), []).append(block)
    return out


def test_one_train_and_evaluate_job_per_fold_reading_every_shard(project: Path) -> None:
    proc = snakemake(project, "-n", "train_all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = jobs(proc.stdout + proc.stderr)
    assert len(listed["train"]) == len(listed["evaluate"]) == 2
    assert len(listed["train_summary"]) == 1
    folds = sorted(re.search(r"fold-(\d+)/checkpoint", b).group(1) for b in listed["train"])
    assert folds == ["1", "2"]
    for block in listed["train"]:
        inputs = re.search(r"^\s+input: (.*)$", block, flags=re.M).group(1)
        for stage, suffix in (("frames", "safetensors"), ("landmarks", "parquet"),
                              ("parsing", "safetensors"), ("captions", "parquet")):
            for shard in ("000", "001", "002", "003"):
                assert f"results/demo/{stage}/shard-{shard}.{suffix}" in inputs, (stage, shard)
        assert "gpu=1" in block  # device auto: the rule asks for a GPU where one is scheduled


def test_levels_off_drop_their_inputs_and_zero_shot_adds_jobs(project: Path) -> None:
    extra = project / "config" / "ablation.yaml"
    extra.write_text(yaml.safe_dump({"train": {
        "runs": {"demo_tiny": {"device": "cpu", "model": {"backbone": "tiny", "pretrained": None,
                                                          "use_parsing": False, "use_captions": False}}},
        "zero_shot": [{"run": "demo_tiny", "train": "demo", "eval": "demo"}],
    }}))
    proc = snakemake(project, "-n", f"--configfile={extra}", "train_all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = jobs(proc.stdout + proc.stderr)
    for block in listed["train"]:
        inputs = re.search(r"^\s+input: (.*)$", block, flags=re.M).group(1)
        assert "landmarks/shard-000.parquet" in inputs
        assert "parsing/" not in inputs and "captions/" not in inputs
        assert "gpu=1" not in block and "gpu=0" in block  # pinned to the CPU
    assert len(listed["zero_shot"]) == 2 and len(listed["zero_shot_summary"]) == 1
    assert any("zeroshot-from-demo/fold-2/metrics.json" in b for b in listed["zero_shot"])


@pytest.mark.slow
def test_demo_pipeline_trains_and_evaluates_every_fold(project: Path) -> None:
    quick = project / "config" / "quick.yaml"
    quick.write_text(yaml.safe_dump({"train": {"runs": {"demo_tiny": {
        "trainer": {"max_epochs": 2, "seed": 0}, "data": {"num_frames": 4, "batch_size": 4, "num_workers": 0},
    }}}}))
    proc = snakemake(project, "--cores", "2", f"--configfile={quick}", "train_all")
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = project / "results" / "demo" / "train" / "demo_tiny"
    for k in (1, 2):
        for name in ("checkpoint.safetensors", "train.json", "metrics.json", "predictions.parquet",
                     "confusion.png", "logs/metrics.csv"):
            assert (run / f"fold-{k}" / name).is_file(), (k, name)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_folds"] == 2 and summary["num_clips"] == 10 and 0.0 <= summary["uar"] <= 1.0
