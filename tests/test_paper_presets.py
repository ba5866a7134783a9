"""The paper presets (config/paper/*.yaml): valid, self-contained, and what they schedule.

A preset is run as ``snakemake --cores all --configfile config/paper/<name>.yaml``: Snakemake
loads config/config.yaml first and merges the preset over it (dicts key by key, lists
replaced). The tests merge the same way (``snakemake.utils.update_config``) and check that
nothing of the demo setup leaks into a paper run. The done-check of the issue is a dry run of
the DFEW preset on a placeholder DFEW tree built from data_manifests/examples/dfew (frame
folders may be empty: the manifest sync only stats them).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from snakemake.utils import update_config, validate
from support.placeholder_trees import placeholder_dfew, placeholder_mafw

from dfer.captions.config import CaptionsConfig
from dfer.captions.prompt import PAPER_PROMPT_VERSION
from dfer.landmarks.config import LandmarksConfig
from dfer.parsing.config import ParsingConfig

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "config" / "paper"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
NAMES = ("dfew", "ferv39k", "mafw", "zeroshot_mafw_to_dfew")
STAGES = ("decode", "landmarks", "parsing", "captions")
RUN = "fineclipper"
#: the paper's zero-shot row is FineCLIPER-dagger: video + captions, no middle level
ZERO_SHOT_RUN = "fineclipper_dagger"


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def merged(name: str) -> dict[str, Any]:
    """config/config.yaml with the preset over it, as ``--configfile`` does."""
    config = load(REPO / "config" / "config.yaml")
    update_config(config, load(PRESETS / f"{name}.yaml"))
    return config


def test_there_is_one_preset_per_experiment() -> None:
    assert sorted(p.stem for p in PRESETS.glob("*.yaml")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_preset_validates_alone_and_over_the_base_config(name: str) -> None:
    validate(copy.deepcopy(load(PRESETS / f"{name}.yaml")), str(SCHEMA))
    config = merged(name)
    validate(config, str(SCHEMA))
    # the stages' own checks accept the sections too (unknown keys, enums, cross-checks)
    LandmarksConfig.from_dict(config["landmarks"])
    ParsingConfig.from_dict(config["parsing"])
    CaptionsConfig.from_params(config["captions"])


@pytest.mark.parametrize("name", NAMES)
def test_preset_pins_the_papers_backends_and_data(name: str) -> None:
    config = merged(name)
    assert config["landmarks"]["backend"] == "face_alignment"
    assert config["parsing"]["backend"] == "facer"
    captions = CaptionsConfig.from_params(config["captions"])
    assert captions.backend == "vllm" and captions.prompt_version == PAPER_PROMPT_VERSION
    assert captions.model == "Qwen/Qwen2.5-VL-7B-Instruct" and captions.raw["vllm"]["input"] == "video"
    assert {config[s]["device"] for s in ("landmarks", "parsing", "captions")} == {"cuda"}
    assert config["decode"]["num_frames"] == 16 and config["decode"]["size"] == 224
    roots = {ds: config["dataset_defs"][ds]["root"] for ds in config["datasets"]}
    face_crops = {"dfew": "/DFEW/Clip/clip_224x224", "ferv39k": "/FERV39k/2_ClipsforFaceCrop",
                  "mafw": "/MAFW/data/faces"}
    assert all(root.endswith(face_crops[ds]) for ds, root in roots.items())


@pytest.mark.parametrize("name", NAMES)
def test_nothing_of_the_base_config_leaks_into_a_preset(name: str) -> None:
    preset, config = load(PRESETS / f"{name}.yaml"), merged(name)
    assert "demo" not in config["datasets"]
    for section in STAGES:  # every key pinned: an edit of config/config.yaml changes no paper run
        assert config[section] == preset[section], section
    for ds in config["datasets"]:
        assert config["dataset_defs"][ds] == preset["dataset_defs"][ds]
    runs = config["train"]["runs"]
    assert runs[RUN] == preset["train"]["runs"][RUN]
    training = {r for r, cfg in runs.items() if cfg.get("datasets") is None
                or set(cfg["datasets"]) & set(config["datasets"])}
    training |= {zs["run"] for zs in config["train"]["zero_shot"]}  # a zero-shot entry trains its run
    # the base config's runs (demo_tiny, ...) train nothing here
    assert training == ({ZERO_SHOT_RUN} if name == "zeroshot_mafw_to_dfew" else {RUN})


def test_presets_share_stages_and_run_so_results_are_reused() -> None:
    """One results folder, the same stage settings and the same run everywhere: the zero-shot
    preset's MAFW folds are the MAFW preset's jobs, not a second training."""
    presets = {name: load(PRESETS / f"{name}.yaml") for name in NAMES}
    first = presets["dfew"]
    for preset in presets.values():
        assert preset["results"] == first["results"]
        for section in STAGES:
            assert preset[section] == first[section]
        run = {k: v for k, v in preset["train"]["runs"][RUN].items() if k != "datasets"}
        assert run == {k: v for k, v in first["train"]["runs"][RUN].items() if k != "datasets"}
        for ds, definition in preset["dataset_defs"].items():
            assert definition == next(p["dataset_defs"][ds] for p in presets.values() if ds in p["dataset_defs"])
    zero_shot = presets["zeroshot_mafw_to_dfew"]["train"]
    assert zero_shot["zero_shot"] == [{"run": ZERO_SHOT_RUN, "train": "mafw", "eval": "dfew"}]
    # the dagger variant is the full run without the middle level, nothing else changed
    dagger = zero_shot["runs"][ZERO_SHOT_RUN]
    full = zero_shot["runs"][RUN]
    assert dagger["model"] == {**full["model"], "use_parsing": False, "use_landmarks": False}
    assert {k: v for k, v in dagger.items() if k not in ("model", "description")} == \
        {k: v for k, v in full.items() if k not in ("model", "description")}


# -- dry runs on placeholder dataset trees ------------------------------------------------------


def dry_run(tmp_path: Path, preset: str, defs: dict[str, dict[str, Any]],
            extra: list[Path] = ()) -> str:
    """``snakemake -n -p --configfile <preset> <overlay>`` in a project holding the real base
    config; the overlay only points the results and the datasets at ``tmp_path``."""
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    shutil.copy2(REPO / "config" / "config.yaml", project / "config" / "config.yaml")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "dataset_defs": defs}))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(project), "--configfile", str(PRESETS / f"{preset}.yaml"), str(overlay),
         *map(str, extra),
         "--cores", "2", "-n", "-p"],
        capture_output=True, text=True, timeout=300,
        # no GPU on this machine, as far as the workflow knows: gpu=1 must come from the preset
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "DFER_LOCAL_GPUS": "0"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def jobs(output: str) -> list[dict[str, Any]]:
    """Each job a dry run lists: rule, wildcards, resources and the --params JSON it passes."""
    found = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        job: dict[str, Any] = {"rule": head.group(1), "wildcards": {}, "resources": {}, "params": None}
        if m := re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE):
            job["wildcards"] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        if m := re.search(r"^\s+resources: (.*)$", block, re.MULTILINE):
            job["resources"] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        if m := re.search(r"^Shell command: (.*)$", block, re.MULTILINE):
            words = shlex.split(m.group(1).split(" 2> ")[0])
            if "--params" in words:
                job["params"] = json.loads(words[words.index("--params") + 1])
        found.append(job)
    return found


def by_rule(listed: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for job in listed:
        out.setdefault(job["rule"], []).append(job)
    return out


def test_dfew_preset_dry_run_lists_pinned_gpu_jobs(tmp_path: Path) -> None:
    """The issue's done-check: every stage on every shard, the backends pinned, a GPU each."""
    preset = load(PRESETS / "dfew.yaml")
    listed = by_rule(jobs(dry_run(tmp_path, "dfew", {"dfew": placeholder_dfew(tmp_path / "data")})))
    shards = preset["dataset_defs"]["dfew"]["num_shards"]
    assert {r: len(j) for r, j in listed.items()} == {
        "decode": shards, "landmarks": shards, "parsing": shards, "captions": shards,
        "train": 5, "evaluate": 5, "train_summary": 1, "report": 1, "all": 1,
    }
    every = [j for rule_jobs in listed.values() for j in rule_jobs if j["wildcards"]]
    assert {j["wildcards"]["dataset"] for j in every} == {"dfew"}
    for rule in ("landmarks", "parsing", "captions", "train", "evaluate"):
        assert {j["resources"].get("gpu") for j in listed[rule]} == {"1"}, rule
    assert {j["resources"].get("gpu", "0") for j in listed["decode"]} == {"0"}
    for rule in ("landmarks", "parsing", "captions"):
        assert all(j["params"] == preset[rule] for j in listed[rule]), rule
    assert all(j["params"]["prompt_version"] == "fineclipper" for j in listed["captions"])
    assert {j["wildcards"]["run"] for j in listed["train"]} == {RUN}
    assert sorted(int(j["wildcards"]["fold"]) for j in listed["train"]) == [1, 2, 3, 4, 5]
    run = preset["train"]["runs"][RUN]
    assert all(j["params"] == {k: run[k] for k in ("data", "device", "model", "optim", "trainer")}
               for j in listed["train"])
    # parse-time sync wrote the manifest of the placeholder tree: every example clip is in it
    manifest = tmp_path / "results" / "dfew" / "manifest" / "manifest.parquet"
    assert manifest.exists()
    assert not (tmp_path / "project" / "data" / "demo").exists()  # the demo was not generated


def test_zero_shot_preset_trains_on_mafw_and_scores_dfew(tmp_path: Path) -> None:
    data = tmp_path / "data"
    listed = by_rule(jobs(dry_run(tmp_path, "zeroshot_mafw_to_dfew",
                                  {"dfew": placeholder_dfew(data), "mafw": placeholder_mafw(data)})))
    assert {j["wildcards"]["dataset"] for j in listed["train"]} == {"mafw"}
    assert len(listed["train"]) == 5 and len(listed["zero_shot"]) == 5
    assert {(j["wildcards"]["dataset"], j["wildcards"]["source"]) for j in listed["zero_shot"]} == {("dfew", "mafw")}
    assert {j["resources"].get("gpu") for j in listed["zero_shot"]} == {"1"}
    assert {j["wildcards"]["dataset"] for j in listed["landmarks"]} == {"dfew", "mafw"}
    # FineCLIPER-dagger by default: the trained model reads no parsing maps or landmarks
    assert {j["wildcards"]["run"] for j in listed["train"] + listed["zero_shot"]} == {ZERO_SHOT_RUN}
    assert all(j["params"]["model"]["use_parsing"] is False for j in listed["train"])
    assert "evaluate" not in listed  # no in-domain MAFW evaluation: the transfer is the target


def test_zero_shot_preset_full_model_is_one_key_away(tmp_path: Path) -> None:
    data = tmp_path / "data"
    preset = load(PRESETS / "zeroshot_mafw_to_dfew.yaml")
    overlay = {"dfew": placeholder_dfew(data), "mafw": placeholder_mafw(data)}
    switched = tmp_path / "switched.yaml"
    switched.write_text(yaml.safe_dump({"train": {"zero_shot": [
        {**preset["train"]["zero_shot"][0], "run": RUN}]}}))
    listed = by_rule(jobs(dry_run(tmp_path, "zeroshot_mafw_to_dfew", overlay, extra=[switched])))
    assert {j["wildcards"]["run"] for j in listed["train"] + listed["zero_shot"]} == {RUN}
    assert len(listed["train"]) == 5 and len(listed["zero_shot"]) == 5
