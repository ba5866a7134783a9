"""`make demo`'s method overlay (config/demo_methods.yaml): DFER-CLIP, CLIPER, A3lign-DFER and S2D
train beside FineCLIPER's demo run on the same decoded frames, and the report pairs them against
it; S2D's static stage trains on demo_static first.

The overlay is a second ``--configfile`` rather than more runs in config/config.yaml, whose
``train.runs`` many tests copy and count. Expected job counts are worked out by hand: one run per method x 2
demo folds, and one preprocessing job per shard (4) for each stage FineCLIPER reads, none more.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from project_copy import copy_project
from snakemake.utils import update_config, validate

from dfer.train.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "config" / "demo_methods.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
RUNS = {"demo_tiny": "fineclipper", "demo_dferclip": "dferclip", "demo_cliper": "cliper", "demo_s2d": "s2d"}
#: runs on demo_static (S2D's static stage, fold 1 only: the video run reads that checkpoint)
STATIC_RUNS = {"demo_s2d_static": "s2d"}
#: the CLIP-based runs share demo_tiny's tiny open_clip model
CLIP_RUNS = ("demo_tiny", "demo_dferclip", "demo_cliper")
RUNS["demo_a3lign"] = "a3lign"  # issue 27


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_overlay_validates_and_adds_one_tiny_run_per_method() -> None:
    overlay = load(OVERLAY)  # not a whole config alone (no results, datasets, ...): validated merged
    config = load(REPO / "config" / "config.yaml")
    assert set(config["train"]["runs"]) == {"demo_tiny", "fineclip_vitb16"}  # base config untouched
    update_config(config, overlay)  # as --configfile merges: dicts key by key
    validate(config, str(SCHEMA))
    runs = config["train"]["runs"]
    on_demo = {r for r, cfg in runs.items() if cfg.get("datasets") is None or "demo" in cfg["datasets"]}
    assert on_demo == set(RUNS)
    assert config["datasets"] == ["demo", "demo_static"]
    assert {r for r, cfg in runs.items() if "demo_static" in (cfg.get("datasets") or [])} == set(STATIC_RUNS)
    tiny = runs["demo_tiny"]["model"]
    for run, method in {**RUNS, **STATIC_RUNS}.items():
        cfg = RunConfig.from_dict(runs[run])  # every key known to the method
        assert cfg.method == method
    for run in CLIP_RUNS:
        model = runs[run]["model"]
        assert (model["backbone"], model["pretrained"], model["model_cfg"]) == ("tiny", None, tiny["model_cfg"])
    static, video = RunConfig.from_dict(runs["demo_s2d_static"]).model, RunConfig.from_dict(runs["demo_s2d"]).model
    assert (static.temporal, static.tune_backbone, static.pretrained) == (False, True, None)
    assert video.static_from == {"run": "demo_s2d_static", "dataset": "demo_static", "fold": 1}
    lf = config["landmark_features"]  # the schema's defaults filled in for the other keys
    assert (lf["backend"], lf["random_init"], lf["weights"]) == ("mobilefacenet", True, None)
    assert config["report"]["reference"] == "demo_tiny"
    # faces are cut at the demo models' input size, so no item is resized per epoch
    assert config["decode"]["size"] == tiny["model_cfg"]["vision_cfg"]["image_size"] == 112
    # no per-epoch scoring of the test fold in the demo (it only logs; make demo's time)
    assert all(runs[r]["trainer"]["check_val_every_n_epoch"] == 0 for r in RUNS)


def test_make_demo_reads_the_overlay() -> None:
    demo = re.search(r"^demo:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), flags=re.M)
    assert demo and "snakemake --cores all --configfile config/demo_methods.yaml" in demo.group(1)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> str:
    """``snakemake -n`` of the whole demo with the overlay, on a two-clips-per-class copy."""
    project = tmp_path_factory.mktemp("demo_methods") / "project"
    copy_project(project, clips_per_class=2, sync=True)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", "-n",
                           "--configfile", "config/demo_methods.yaml"],
                          cwd=project, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def jobs(output: str) -> dict[str, list[str]]:
    """rule name -> the text block of each of its jobs in a dry run's listing."""
    out: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=rule \w+:)", output):
        head = re.match(r"rule (\w+):", block)
        if head:
            out.setdefault(head.group(1), []).append(block)
    return out


def run_fold(block: str, dataset: str = "demo") -> tuple[str, str] | None:
    output = re.search(r"^\s+output: (.*)$", block, flags=re.M).group(1)
    found = re.search(rf"results/{dataset}/train/([\w.-]+)/fold-(\d+)/", output)
    return (found.group(1), found.group(2)) if found else None


def test_dry_run_trains_and_evaluates_every_method_on_both_folds(dry_run: str) -> None:
    listed = jobs(dry_run)
    want = sorted((run, fold) for run in RUNS for fold in ("1", "2"))
    static = [("demo_s2d_static", "1")]
    for rule in ("train", "evaluate"):
        assert sorted(f for b in listed[rule] if (f := run_fold(b))) == want, rule
        assert [f for b in listed[rule] if (f := run_fold(b, "demo_static"))] == static, rule
    assert len(listed["train_summary"]) == len(RUNS) + len(STATIC_RUNS)
    report_inputs = re.search(r"^\s+input: (.*)$", listed["report"][0], flags=re.M).group(1)
    for run in RUNS:
        assert f"results/demo/train/{run}/summary.json" in report_inputs
    assert "results/demo_static/train/demo_s2d_static/summary.json" in report_inputs
    # the video folds wait for the static stage's fold-1 checkpoint
    for block in listed["train"]:
        if run_fold(block) and run_fold(block)[0] == "demo_s2d":
            inputs = re.search(r"^\s+input: (.*)$", block, flags=re.M).group(1)
            assert "results/demo_static/train/demo_s2d_static/fold-1/checkpoint.safetensors" in inputs


def test_new_methods_read_frames_only_and_add_no_preprocessing(dry_run: str) -> None:
    """DFER-CLIP and CLIPER add nothing; S2D adds landmark features on the shards it reads (4 demo
    + 2 demo_static) and the decode of demo_static, and nothing of FineCLIPER's stages."""
    listed = jobs(dry_run)
    # one job per shard for each stage FineCLIPER's demo_tiny reads, as without the overlay
    assert {rule: len(listed.get(rule, [])) for rule in
            ("decode", "landmarks", "parsing", "captions", "landmark_features")} \
        == {"decode": 4 + 2, "landmarks": 4, "parsing": 4, "captions": 4, "landmark_features": 4 + 2}
    for block in listed["train"]:
        if run_fold(block) is None:
            continue
        run, _ = run_fold(block)
        inputs = re.search(r"^\s+input: (.*)$", block, flags=re.M).group(1)
        assert "results/demo/frames/shard-000.safetensors" in inputs
        reads_more = any(f"results/demo/{stage}/" in inputs for stage in ("landmarks", "parsing", "captions"))
        assert reads_more == (run == "demo_tiny"), run
        assert ("results/demo/landmark_features/shard-000.safetensors" in inputs) == (run == "demo_s2d"), run


def test_demo_a3lign_runs_the_three_bap_stages_briefly() -> None:
    """The demo's A3lign-DFER run keeps the method's three stages (their groups, in order) and its
    optimiser, only with 2 epochs each (6 in all), for time on 2 CPU cores."""
    config = load(REPO / "config" / "config.yaml")
    update_config(config, load(OVERLAY))
    cfg = RunConfig.from_dict(config["train"]["runs"]["demo_a3lign"])
    stages = cfg.optim.resolved_stages()
    assert [(s.epochs, set(s.groups)) for s in stages] == [
        (2, {"mat", "text_dynamic", "text_tower"}), (2, {"video_dynamic", "image_tower"}),
        (None, {"mat", "text_dynamic", "text_tower", "video_dynamic", "image_tower"})]
    assert cfg.trainer.max_epochs == 6 and {s.optimizer for s in stages} == {"sgd"}
