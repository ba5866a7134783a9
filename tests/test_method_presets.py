"""The method presets (config/methods/{dferclip,cliper,s2d,a3lign}/*.yaml): valid, faithful to the public
hyper-parameters, sharing the paper presets' decoded frames, and scheduling only what the
method reads.

The expected values are typed here from ../shared/METHODS.md (sections 1e/1a for DFER-CLIP,
2a/2e for CLIPER), not read from the method registrations, so a preset that drifts from the
public code fails even where the registry's defaults drift with it. The done-check of issue
26: a dry run of each method's DFEW preset on a placeholder DFEW tree lists decode, the
training jobs and the report, and no landmarks, parsing or captions job.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from snakemake.utils import update_config, validate
from support.placeholder_trees import placeholder_affectnet, placeholder_dfew, placeholder_rafdb
from test_paper_presets import by_rule, dry_run, jobs

from dfer.train.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
METHODS = REPO / "config" / "methods"
PAPER = REPO / "config" / "paper"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DATASETS = ("dfew", "ferv39k", "mafw")
PRESETS = [(m, ds) for m in ("dferclip", "cliper", "s2d") for ds in DATASETS]
#: S2D's static stage alone (stage 1 of config/methods/s2d/<video>.yaml, on AffectNet-7 there)
STATIC_PRESETS = [("s2d", "affectnet"), ("s2d", "rafdb")]
#: datasets a preset trains on before its own (S2D: the static stage's)
BEFORE = {"s2d": ["affectnet"]}
# A3lign-DFER (issue 27): every value UNVERIFIED (no public code); see its tests at the end
PRESETS += [("a3lign", ds) for ds in DATASETS]


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def merged(method: str, ds: str) -> dict[str, Any]:
    """config/config.yaml with the preset over it, as ``--configfile`` does."""
    config = load(REPO / "config" / "config.yaml")
    update_config(config, load(METHODS / method / f"{ds}.yaml"))
    return config


def test_there_is_one_preset_per_method_and_dataset() -> None:
    assert sorted((p.parent.name, p.stem) for p in METHODS.glob("*/*.yaml")) == sorted(PRESETS + STATIC_PRESETS)


@pytest.mark.parametrize(("method", "ds"), PRESETS)
def test_preset_validates_and_trains_only_its_method(method: str, ds: str) -> None:
    validate(copy.deepcopy(load(METHODS / method / f"{ds}.yaml")), str(SCHEMA))
    config = merged(method, ds)
    validate(config, str(SCHEMA))
    assert config["datasets"] == [*BEFORE.get(method, []), ds]
    runs = config["train"]["runs"]
    training = {r for r, cfg in runs.items() if cfg.get("datasets") is None or ds in cfg["datasets"]}
    assert training == {method}  # the base config's demo runs train nothing here
    assert RunConfig.from_dict(runs[method]).method == method  # every key known to the method


@pytest.mark.parametrize(("method", "ds"), PRESETS)
def test_preset_shares_the_paper_presets_data_and_frames(method: str, ds: str) -> None:
    """Same results folder, dataset definition and decode section as config/paper/<ds>.yaml:
    the method trains on FineCLIPER's decoded frames and folds, and adding it to a paper study
    re-decodes nothing."""
    preset, paper = load(METHODS / method / f"{ds}.yaml"), load(PAPER / f"{ds}.yaml")
    assert preset["results"] == paper["results"]
    assert {k: preset["dataset_defs"][k] for k in paper["dataset_defs"]} == paper["dataset_defs"]
    assert set(preset["dataset_defs"]) == {ds, *BEFORE.get(method, [])}
    assert preset["decode"] == paper["decode"]


#: METHODS.md 1a/1e: DFER-CLIP's public main.py and video_dataloader.py
DFERCLIP_PUBLIC = {
    "optim": {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "schedule": "multistep",
              "milestones": [30, 40], "gamma": 0.1,
              "group_lr": {"temporal": 1e-2, "image": 1e-5, "prompts": 1e-3}},
    "data": {"num_frames": 16, "batch_size": 48, "train_sampler": "segment_random",
             "test_sampler": "segment_centre", "flip": True, "crop_scale": [0.08, 1.0]},
    "max_epochs": 50, "precision": "32-true", "backbone": "ViT-B-32-quickgelu",
    # the dataset-specific augmentation (brightness, rotation)
    "extra": {"dfew": (0.5, 0.0), "ferv39k": (0.0, 4.0), "mafw": (0.0, 0.0)},
}


@pytest.mark.parametrize("ds", DATASETS)
def test_dferclip_preset_holds_the_public_hyper_parameters(ds: str) -> None:
    cfg = RunConfig.from_dict(merged("dferclip", ds)["train"]["runs"]["dferclip"])
    want = DFERCLIP_PUBLIC
    for key, value in want["optim"].items():
        assert getattr(cfg.optim, key) == pytest.approx(value) if not isinstance(value, str) \
            else getattr(cfg.optim, key) == value, key
    for key, value in want["data"].items():
        assert getattr(cfg.data, key) == value, key
    assert (cfg.data.brightness, cfg.data.rotation) == want["extra"][ds]
    assert cfg.trainer.max_epochs == want["max_epochs"] and cfg.trainer.precision == want["precision"]
    assert cfg.model.backbone == want["backbone"] and cfg.model.temperature == 0.01
    assert (cfg.model.context_tokens, cfg.model.temporal_layers, cfg.model.temporal_heads,
            cfg.model.temporal_head_dim, cfg.model.temporal_mlp_dim) == (8, 1, 8, 64, 1024)


@pytest.mark.parametrize("ds", DATASETS)
def test_cliper_preset_holds_the_static_scripts_hyper_parameters(ds: str) -> None:
    cfg = RunConfig.from_dict(merged("cliper", ds)["train"]["runs"]["cliper"])
    stages = cfg.optim.resolved_stages()
    assert len(stages) == 2
    first, second = stages
    assert first.epochs == 2 and first.groups == ["descriptors"] and first.lr == 1e-2
    assert first.weight_decay == 0.0 and first.schedule == "constant" and first.optimizer == "adamw"
    assert first.eps == 1e-4 and second.eps == 1e-4
    assert second.groups == ["image", "temporal"] and second.lr == 5e-6 and second.weight_decay == 0.1
    assert second.schedule == "cosine_restarts" and second.t0 == 10
    assert cfg.trainer.max_epochs == 59 and cfg.data.batch_size == 128
    assert (cfg.data.brightness, cfg.data.hue, cfg.data.crop_scale, cfg.data.crop_ratio) == \
        (0.4, 0.3, [0.15, 1.0], [0.3, 3.3])
    assert cfg.model.backbone == "ViT-B-16-quickgelu" and cfg.model.sub_descriptors == 5
    assert cfg.model.template == "an ID photo of X X X X." and cfg.model.descriptor_init_std == 1e-3


@pytest.mark.parametrize("method", ["dferclip", "cliper"])
def test_cliper_and_dferclip_dfew_dry_runs_schedule_frames_only(tmp_path: Path, method: str) -> None:
    """Issue 26's done-check: decode on every shard, the method's 5 folds, the summary and the
    report, and nothing of landmarks, parsing or captions (the method reads frames only)."""
    out = dry_run(tmp_path, "dfew", {"dfew": placeholder_dfew(tmp_path / "data")},
                  preset_file=METHODS / method / "dfew.yaml")
    listed = by_rule(jobs(out))
    shards = load(PAPER / "dfew.yaml")["dataset_defs"]["dfew"]["num_shards"]
    assert {r: len(j) for r, j in listed.items()} == {
        "decode": shards, "train": 5, "evaluate": 5, "train_summary": 1, "report": 1, "all": 1,
    }
    assert {j["wildcards"]["run"] for j in listed["train"]} == {method}
    assert {j["params"]["model"]["method"] for j in listed["train"]} == {method}


# --- A3lign-DFER (no public code: METHODS.md 4, all UNVERIFIED) ---------------------------------------

#: METHODS.md 4 (the notes) and our choices (docs/methods.md, "A3lign-DFER"), typed here
A3LIGN = {
    "model": {"backbone": "ViT-B-32-quickgelu", "pretrained": "openai", "sentences": 16, "mat_tokens": 64,
              "tune_text_tower": False, "tune_image_tower": False, "max_frames": 16, "temperature": 0.01,
              "text_dynamic": True, "dynamic_layers": 1, "dynamic_heads": 8, "dynamic_head_dim": 64,
              "dynamic_mlp_dim": 1024},
    "data": {"num_frames": 16, "batch_size": 64, "train_sampler": "uniform", "test_sampler": "uniform",
             "flip": True, "crop_ratio": [1.0, 1.0]},
    # the notes' three BAP stages: 40 epochs text side, 30 video encoder, 30 joint; SGD
    "stages": [(40, {"mat", "text_dynamic", "text_tower"}), (30, {"video_dynamic", "image_tower"}),
               (30, {"mat", "text_dynamic", "text_tower", "video_dynamic", "image_tower"})],
}


@pytest.mark.parametrize("ds", DATASETS)
def test_a3lign_preset_holds_the_notes_values_and_marks_every_choice_unverified(ds: str) -> None:
    run = merged("a3lign", ds)["train"]["runs"]["a3lign"]
    cfg = RunConfig.from_dict(run)
    for key, value in A3LIGN["model"].items():
        assert getattr(cfg.model, key) == value, key
    for key, value in A3LIGN["data"].items():
        assert getattr(cfg.data, key) == value, key
    assert cfg.data.crop_scale == [pytest.approx((112 / 120) ** 2)] * 2  # resize 120, crop 112
    stages = cfg.optim.resolved_stages()
    assert [(s.epochs, set(s.groups)) for s in stages] == A3LIGN["stages"]
    assert {s.optimizer for s in stages} == {"sgd"} and cfg.trainer.max_epochs == 100
    # every key of the run's model / data / optim blocks is marked UNVERIFIED on its line or on the
    # comment line above it, except the continuation lines of a marked one (listed by hand)
    text = (METHODS / "a3lign" / f"{ds}.yaml").read_text(encoding="utf-8").splitlines()
    start, end = text.index("      model:"), text.index([t for t in text if t.startswith("      trainer:")][0])
    continuation = {"method", "pretrained", "tune_image_tower", "dynamic_heads", "dynamic_head_dim",
                    "dynamic_mlp_dim", "test_sampler", "crop_ratio", "crop_rule", "decay_1d",
                    "warmup_fraction", "min_lr_ratio"}
    keys = []
    for i in range(start, end):
        key = re.match(r"^ {8}(\w+):", text[i])
        if key and key.group(1) not in continuation:
            keys.append(key.group(1))
            assert "UNVERIFIED" in text[i] or ("#" in text[i - 1] and "UNVERIFIED" in text[i - 1]), text[i]
    assert {"backbone", "sentences", "mat_tokens", "batch_size", "crop_scale", "optimizer", "group_lr",
            "stages"} <= set(keys)
    assert "UNVERIFIED" in text[end] or "our choice" in text[end]  # the trainer line


def test_a3lign_dfew_dry_run_schedules_frames_only(tmp_path: Path) -> None:
    """Decode on every shard, 5 folds of training and evaluation, the summary and the report;
    no landmarks, parsing or captions job (A3lign-DFER reads frames only)."""
    out = dry_run(tmp_path, "dfew", {"dfew": placeholder_dfew(tmp_path / "data")},
                  preset_file=METHODS / "a3lign" / "dfew.yaml")
    listed = by_rule(jobs(out))
    shards = load(PAPER / "dfew.yaml")["dataset_defs"]["dfew"]["num_shards"]
    assert {r: len(j) for r, j in listed.items()} == {
        "decode": shards, "train": 5, "evaluate": 5, "train_summary": 1, "report": 1, "all": 1,
    }
    assert {j["params"]["model"]["method"] for j in listed["train"]} == {"a3lign"}
# --- S2D: static stage, then video (METHODS.md section 3) ----------------------------------------

#: METHODS.md 3a/3b/3d/3e, typed here: (head dropout, label smoothing, SDL) per dataset
S2D_PER_DATASET = {"dfew": (0.5, 0.1, False), "ferv39k": (0.0, 0.0, True), "mafw": (0.5, 0.1, False)}


@pytest.mark.parametrize("ds", DATASETS)
def test_s2d_preset_holds_the_public_hyper_parameters(ds: str) -> None:
    runs = merged("s2d", ds)["train"]["runs"]
    video, static = RunConfig.from_dict(runs["s2d"]), RunConfig.from_dict(runs["s2d_static"])
    m = video.model
    assert (m.embed_dim, m.depth, m.patch_size, m.img_size, m.num_frames) == (768, 12, 16, 224, 16)
    assert (m.prompt_hidden, m.adapter_ratio, m.adapter_heads, m.fovea_sharpness) == (8, 0.25, 8, 10.0)
    assert (m.landmark_kind, m.landmark_channels) == ("mobilefacenet_conv4", 128)
    assert (m.head_dropout, m.label_smoothing, m.sdl) == S2D_PER_DATASET[ds]
    assert m.static_from == {"run": "s2d_static", "dataset": "affectnet", "fold": 1} and m.temporal
    assert (video.data.num_frames, video.data.batch_size, video.data.train_sampler) == (16, 16, "window_random")
    assert video.data.flip is False and video.data.crop_scale is None and video.data.rotation == 0
    o = video.optim
    assert (o.optimizer, o.lr, o.weight_decay, o.schedule) == ("adamw", pytest.approx(1e-5 * 16 / 8), 0.05,
                                                                 "warmup_cosine")
    assert o.warmup_fraction == pytest.approx(2 / 100) and video.trainer.max_epochs == 100
    assert static.model.temporal is False and static.model.tune_backbone and static.data.num_frames == 1
    assert static.model.num_frames == 1 and static.data.flip is False


def _checkpoint_of(job: dict) -> str:
    return job["params"]["model"]["pretrained"]


@pytest.mark.slow  # ~30 s wall on the shared 2 cores (the dependency alone: the next test)
def test_s2d_dfew_dry_run_trains_the_static_stage_first(tmp_path: Path) -> None:
    """The two stages as rules: decode and landmark features on both datasets' shards, the
    static run's one fold on AffectNet, the video run's 5 DFEW folds each given that fold's
    checkpoint as its backbone; no landmarks, parsing or captions job."""
    data = tmp_path / "data"
    out = dry_run(tmp_path, "dfew", {"dfew": placeholder_dfew(data), "affectnet": placeholder_affectnet(data)},
                  preset_file=METHODS / "s2d" / "dfew.yaml")
    listed = by_rule(jobs(out))
    per_ds = {ds: sum(j["wildcards"]["dataset"] == ds for j in listed["decode"]) for ds in ("dfew", "affectnet")}
    assert per_ds["dfew"] > 0 and per_ds["affectnet"] > 0
    assert {r: len(j) for r, j in listed.items()} == {
        "decode": sum(per_ds.values()), "landmark_features": sum(per_ds.values()),
        "train": 6, "evaluate": 6, "train_summary": 2, "report": 1, "all": 1,
    }
    assert sorted((j["wildcards"]["dataset"], j["wildcards"]["run"]) for j in listed["train"]) == \
        [("affectnet", "s2d_static")] + [("dfew", "s2d")] * 5
    static_ckpt = str(tmp_path / "results" / "affectnet" / "train" / "s2d_static" / "fold-1" / "checkpoint.safetensors")
    assert {_checkpoint_of(j) for j in listed["train"] if j["wildcards"]["run"] == "s2d"} == {static_ckpt}
    assert [j["params"] for j in listed["landmark_features"]][0]["backend"] == "mobilefacenet"


def test_s2d_video_fold_depends_on_the_static_checkpoint(tmp_path: Path) -> None:
    """Asking for one video fold's checkpoint alone schedules the static run's training first:
    the static checkpoint is a declared input of the video train job."""
    data = tmp_path / "data"
    target = tmp_path / "results" / "dfew" / "train" / "s2d" / "fold-2" / "checkpoint.safetensors"
    out = dry_run(tmp_path, "dfew", {"dfew": placeholder_dfew(data), "affectnet": placeholder_affectnet(data)},
                  extra=["--until", str(target)], preset_file=METHODS / "s2d" / "dfew.yaml")
    listed = by_rule(jobs(out))
    assert sorted((j["wildcards"]["dataset"], j["wildcards"]["run"], j["wildcards"]["fold"])
                  for j in listed["train"]) == [("affectnet", "s2d_static", "1"), ("dfew", "s2d", "2")]
    assert "evaluate" not in listed


@pytest.mark.parametrize(("ds", "tree"), [("rafdb", placeholder_rafdb), ("affectnet", placeholder_affectnet)])
def test_static_presets_dry_run_on_placeholder_trees(tmp_path: Path, ds: str, tree) -> None:
    """A RAF-DB-layout and an AffectNet-layout placeholder tree through the static-stage presets:
    decode and landmark features per shard, one fold trained and evaluated, the report."""
    out = dry_run(tmp_path, ds, {ds: tree(tmp_path / "data")}, preset_file=METHODS / "s2d" / f"{ds}.yaml")
    listed = by_rule(jobs(out))
    shards = len(listed["decode"])
    assert shards > 0 and {r: len(j) for r, j in listed.items()} == {
        "decode": shards, "landmark_features": shards, "train": 1, "evaluate": 1, "train_summary": 1,
        "report": 1, "all": 1}
    assert listed["train"][0]["params"]["model"]["temporal"] is False


def _problem(config: dict) -> str | None:
    from dfer.config_check import config_problem

    return config_problem(config, SCHEMA)


def test_static_from_naming_no_static_run_is_a_config_error() -> None:
    config = merged("s2d", "dfew")
    assert _problem(copy.deepcopy(config)) is None
    bad = copy.deepcopy(config)
    bad["train"]["runs"]["s2d"]["model"]["static_from"]["run"] = "s2d_statik"
    assert _problem(bad) == ("config error at train.runs.s2d.model.static_from.run: run 's2d_statik' is not "
                             "another key of train.runs (known: demo_tiny, fineclip_vitb16, s2d_static)")
    video = copy.deepcopy(config)
    video["train"]["runs"]["s2d"]["model"]["static_from"]["run"] = "demo_tiny"
    assert "run 'demo_tiny' is not an S2D static run" in _problem(video)
    elsewhere = copy.deepcopy(config)
    elsewhere["train"]["runs"]["s2d"]["model"]["static_from"]["dataset"] = "rafdb"
    assert "run 's2d_static' does not train on dataset 'rafdb' here" in _problem(elsewhere)
    both = copy.deepcopy(config)
    both["train"]["runs"]["s2d"]["model"]["pretrained"] = "/models/static.pth"
    assert "set model.static_from or model.pretrained, not both" in _problem(both)
    kind = copy.deepcopy(config)
    kind["landmark_features"]["backend"] = "fan_heatmaps"
    assert _problem(kind).startswith("config error at train.runs.s2d_static.model.landmark_kind: run "
                                     "'s2d_static' reads landmark features of kind 'mobilefacenet_conv4', "
                                     "but landmark_features.backend 'fan_heatmaps' writes 'fan_heatmap_14'")
