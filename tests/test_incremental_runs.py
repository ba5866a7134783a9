"""Incremental training runs: editing a run's `datasets` or `folds` schedules only new work.

A train / evaluate job's params hold only what changes a fold's result (the run's model, data,
optim, trainer and device blocks); the run's `datasets` and `folds` lists only say which jobs
exist. A tiny project (demo datasets of 10 clips in one shard, 2 frames of 32 px, a 1-layer
random CLIP, 1 epoch on the CPU) is trained for real once per module; each test works on its own
copy (metadata and mtimes kept, as in test_incremental.py) and checks the exact job list of
``snakemake -n train_all``.
"""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
from pathlib import Path

import pytest
import yaml
from test_incremental import snakemake

from dfer.demo import generate_demo

TINY_RUN = {
    "device": "cpu",
    "description": "tiny CPU run",
    "model": {
        "backbone": "tiny", "pretrained": None,
        "use_landmarks": False, "use_parsing": False, "use_captions": False,
        "model_cfg": {
            "embed_dim": 32, "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1},
        },
    },
    "data": {"num_frames": 2, "batch_size": 8, "num_workers": 0},
    "optim": {"lr": 0.001},
    "trainer": {"max_epochs": 1, "seed": 0, "accelerator": "cpu", "log_every_n_steps": 1},
}


def demo_def(name: str) -> dict:
    return {"layout": "demo", "root": f"data/{name}", "split_files": [f"data/{name}/manifest.csv"],
            "num_shards": 1}


BASE_CONFIG = {
    "results": "results",
    "datasets": ["demo"],
    "dataset_defs": {"demo": demo_def("demo"), "demo2": demo_def("demo2")},
    "decode": {"num_frames": 2, "size": 32},
    "train": {"runs": {
        # every fold of every dataset, written the short way
        "every": {**TINY_RUN, "datasets": None, "folds": None},
        # fold 1 of demo only
        "first": {**TINY_RUN, "datasets": ["demo"], "folds": [1]},
    }},
}


def write_config(project: Path, config: dict) -> None:
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def jobs(dry_run_output: str) -> list[str]:
    """The jobs a dry run lists, as sorted ``rule[wildcards]`` strings."""
    found = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        head = re.match(r"(?:local)?rule (\w+):", block.strip())
        if head:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, flags=re.M)
            found.append(f"{head.group(1)}[{wildcards.group(1) if wildcards else ''}]")
    return sorted(found)


def dry_run(project: Path) -> list[str]:
    return jobs(snakemake(project, "-n", "train_all"))


def digests(folder: Path) -> dict[str, str]:
    """Content hash of every file under ``folder`` (proof that nothing was rewritten)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both demo datasets generated (2 folds each); runs `every` and `first` trained on demo."""
    project = tmp_path_factory.mktemp("runs")
    (project / "config").mkdir()
    for name, seed in (("demo", 0), ("demo2", 1)):
        generate_demo(project / "data" / name, seed=seed, clips_per_class=2, num_folds=2,
                      num_frames=(6, 8), size=64, progress=False)
    write_config(project, BASE_CONFIG)
    snakemake(project, "train_all")
    assert dry_run(project) == []
    return project


@pytest.fixture
def project(trained_project: Path, tmp_path: Path) -> Path:
    """A private copy of the trained project (timestamps and Snakemake metadata kept)."""
    dest = tmp_path / "project"
    shutil.copytree(trained_project, dest, symlinks=True)
    return dest


def test_the_fixture_trained_every_configured_fold(trained_project):
    train = trained_project / "results" / "demo" / "train"
    for run, folds in (("every", (1, 2)), ("first", (1,))):
        for k in folds:
            assert (train / run / f"fold-{k}" / "metrics.json").is_file(), (run, k)
        assert (train / run / "summary.json").is_file()
    assert not (train / "first" / "fold-2").exists()
    assert not (trained_project / "results" / "demo2").exists()


def test_same_folds_written_out_explicitly_reruns_nothing(project):
    config = copy.deepcopy(BASE_CONFIG)
    every = config["train"]["runs"]["every"]
    every.update(datasets=["demo"], folds=[1, 2], description="the same run, spelled out")
    config["train"]["runs"]["first"]["folds"] = [1]
    write_config(project, config)
    assert dry_run(project) == []


def test_adding_a_dataset_to_the_runs_schedules_only_that_dataset(project):
    before = digests(project / "results" / "demo")
    config = copy.deepcopy(BASE_CONFIG)
    config["datasets"] = ["demo", "demo2"]
    config["train"]["runs"]["first"]["datasets"] = ["demo", "demo2"]  # `every` takes all
    write_config(project, config)
    assert dry_run(project) == [
        "decode[dataset=demo2, shard=000]",
        "evaluate[dataset=demo2, run=every, fold=1]",
        "evaluate[dataset=demo2, run=every, fold=2]",
        "evaluate[dataset=demo2, run=first, fold=1]",
        "train[dataset=demo2, run=every, fold=1]",
        "train[dataset=demo2, run=every, fold=2]",
        "train[dataset=demo2, run=first, fold=1]",
        "train_all[]",
        "train_summary[dataset=demo2, run=every]",
        "train_summary[dataset=demo2, run=first]",
    ]
    assert digests(project / "results" / "demo") == before  # parsing rewrote nothing of demo


def test_adding_a_fold_schedules_only_that_fold(project):
    config = copy.deepcopy(BASE_CONFIG)
    config["train"]["runs"]["first"]["folds"] = [1, 2]
    write_config(project, config)
    assert dry_run(project) == [
        "evaluate[dataset=demo, run=first, fold=2]",
        "train[dataset=demo, run=first, fold=2]",
        "train_all[]",
        "train_summary[dataset=demo, run=first]",  # averages one more fold
    ]


def test_changing_what_a_fold_learns_retrains_that_run_only(project):
    config = copy.deepcopy(BASE_CONFIG)
    config["train"]["runs"]["every"]["optim"] = {"lr": 0.002}
    write_config(project, config)
    assert dry_run(project) == [
        "evaluate[dataset=demo, run=every, fold=1]",
        "evaluate[dataset=demo, run=every, fold=2]",
        "train[dataset=demo, run=every, fold=1]",
        "train[dataset=demo, run=every, fold=2]",
        "train_all[]",
        "train_summary[dataset=demo, run=every]",
    ]


def method_run(method: str) -> dict:
    """TINY_RUN's backbone and data under another method (its own optimiser and sampler
    defaults), fold 1 of demo."""
    model = {"method": method, "backbone": "custom", "pretrained": None, "model_cfg": TINY_RUN["model"]["model_cfg"]}
    if method == "dferclip":
        model.update(temporal_heads=2, temporal_head_dim=16, temporal_mlp_dim=64, max_frames=2)
    return {"device": "cpu", "datasets": ["demo"], "folds": [1], "model": model,
            "data": {"num_frames": 2, "batch_size": 8, "num_workers": 0},
            "trainer": {"max_epochs": 3, "seed": 0, "accelerator": "cpu", "log_every_n_steps": 1}}


METHOD_JOBS = [
    "evaluate[dataset=demo, run=cl, fold=1]",
    "evaluate[dataset=demo, run=dc, fold=1]",
    "train[dataset=demo, run=cl, fold=1]",
    "train[dataset=demo, run=dc, fold=1]",
    "train_all[]",
    "train_summary[dataset=demo, run=cl]",
    "train_summary[dataset=demo, run=dc]",
]


def test_adding_other_methods_schedules_only_their_jobs(project):
    """DFER-CLIP and CLIPER read frames only: added to the finished study, they schedule their
    own train / evaluate / summary jobs and no landmark job, where a FineCLIPER run with
    landmarks schedules the landmarks stage (the contrast shows the check can fail)."""
    config = copy.deepcopy(BASE_CONFIG)
    landmarked = copy.deepcopy(config["train"]["runs"]["first"])
    landmarked["model"]["use_landmarks"] = True
    config["train"]["runs"]["fine_lm"] = landmarked
    write_config(project, config)
    assert "landmarks[dataset=demo, shard=000]" in dry_run(project)
    config = copy.deepcopy(BASE_CONFIG)
    config["train"]["runs"].update(dc=method_run("dferclip"), cl=method_run("cliper"))
    write_config(project, config)
    assert dry_run(project) == METHOD_JOBS
    # a zero-shot entry without `run` applies to the runs whose method can score unseen classes
    config["train"]["zero_shot"] = [{"train": "demo", "eval": "demo"}]
    write_config(project, config)
    zero_shot = {re.search(r"run=([^,\]]+)", job).group(1) for job in dry_run(project) if job.startswith("zero_shot")}
    assert zero_shot == {"every", "first"}


@pytest.mark.slow
def test_other_methods_train_and_evaluate_through_the_workflow(project):
    """The rules' `dfer train` / `dfer evaluate` jobs on the declared frames only: each run's
    fold is trained by its method (train.json, the checkpoint) and scored; the FineCLIPER runs'
    files are untouched and nothing is left to do."""
    import json

    before = digests(project / "results" / "demo" / "train")
    config = copy.deepcopy(BASE_CONFIG)
    config["train"]["runs"].update(dc=method_run("dferclip"), cl=method_run("cliper"))
    write_config(project, config)
    snakemake(project, "train_all")
    assert dry_run(project) == []
    train = project / "results" / "demo" / "train"
    for run, method in (("dc", "dferclip"), ("cl", "cliper")):
        summary = json.loads((train / run / "fold-1" / "train.json").read_text())
        assert summary["method"] == method and summary["epochs"] == 3
        metrics = json.loads((train / run / "fold-1" / "metrics.json").read_text())
        assert metrics["method"] == method and 0.0 <= metrics["uar"] <= 1.0 and metrics["num_clips"] > 0
    after = digests(train)
    assert {k: v for k, v in after.items() if k.split("/")[0] in ("every", "first")} == before
