"""Where a job runs is not what it computes: execution keys re-run nothing, result keys do.

Every stage's config module lists its ``EXECUTION_KEYS`` (``dfer.train.execution`` for runs);
the rules' tracked params hold only the other keys, and jobs get their whole section
untracked. A demo project whose every job is recorded as finished (empty outputs, then
``snakemake --touch --forceall``, so Snakemake holds each job's params, code and mtimes) is
asked ``snakemake -n`` after each kind of edit. Dry runs take seconds each, so each test
changes a whole group of keys at once; the pure functions are checked key by key.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from project_copy import copy_project

from dfer.captions.config import EXECUTION_KEYS as CAPTIONS_KEYS
from dfer.captions.config import CaptionsConfig
from dfer.core.execution_keys import result_part, split
from dfer.landmarks.config import EXECUTION_KEYS as LANDMARKS_KEYS
from dfer.parsing.config import EXECUTION_KEYS as PARSING_KEYS
from dfer.train import execution

RUN = {
    "datasets": ["demo"],
    "device": "auto",
    "model": {"backbone": "tiny", "pretrained": None,
              "model_cfg": {"embed_dim": 32, "quick_gelu": True,
                            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                                           "head_width": 32},
                            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32,
                                         "heads": 1, "layers": 1}}},
    "data": {"num_frames": 2, "batch_size": 4},  # num_workers: follows the job's threads
    "optim": {"lr": 0.001},
    "trainer": {"max_epochs": 1, "seed": 0},
}

#: Every execution key changed at once (values valid for the config checks).
EXECUTION_EDITS = {
    "landmarks": {"device": "cuda:1", "batch_size": 8},
    "parsing": {"device": "cuda:1", "batch_size": 4},
    "captions": {"batch_size": 3, "device": "cpu",
                 "openai": {"base_url": "http://10.0.0.9:9000/v1", "api_key_env": "OTHER_KEY",
                            "max_concurrency": 2, "timeout_s": 5.0, "max_retries": 1, "backoff_s": 0.5},
                 "vllm": {"gpu_memory_utilization": 0.5, "tensor_parallel_size": 2,
                          "python": "/opt/vllm/bin/python"}},
    "run": {"device": "cpu", "data": {"num_workers": 5, "eval_batch_size": 64, "max_open_shards": 3},
            "trainer": {"accelerator": "cpu"}},
}


def trainer_has(key: str) -> bool:
    from dfer.train.config import TrainerConfig

    return key in TrainerConfig.__dataclass_fields__


def merge(base: dict, edit: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in edit.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def snakemake(project: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", "--cores", "8", *args],
                          cwd=project, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    return out


def blocks(listing: str) -> list[tuple[str, str]]:
    """(rule, text) of every job of a dry run's listing."""
    out = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", listing):
        head = re.match(r"(?:local)?rule (\w+):", block.strip())
        if head:
            out.append((head.group(1), block))
    return out


def write_config(project: Path, cfg: dict) -> None:
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict, str]:
    """A demo project (1 clip per class) whose every job counts as finished; its config and
    the `-n -p --forceall` listing of the base config."""
    project = tmp_path_factory.mktemp("where") / "project"
    cfg = copy_project(project, clips_per_class=1, sync=True)
    cfg["decode"].update(num_frames=2, size=32)
    cfg["captions"]["backend"] = "openai"
    cfg["train"]["runs"] = {"tiny": RUN}
    write_config(project, cfg)
    listing = snakemake(project, "-n", "-p", "--forceall")
    for _rule, block in blocks(listing):
        outputs = re.search(r"^\s+output: (.*)$", block, flags=re.M)
        for path in outputs.group(1).split(", ") if outputs else []:
            target = project / path
            if path.endswith("/gallery"):
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"")
    snakemake(project, "--touch", "--forceall")  # records every job's params and code
    return project, cfg, listing


@pytest.fixture
def project(finished, tmp_path) -> tuple[Path, dict]:
    src, cfg, _ = finished
    dest = tmp_path / "project"
    shutil.copytree(src, dest, symlinks=True)
    return dest, copy.deepcopy(cfg)


#: The keys issue 23 names as "where, not what", written out here independently of the library.
WHERE_KEYS = {
    "landmarks": {"device", "batch_size"},
    "parsing": {"device", "batch_size"},
    "captions": {"device", "batch_size", "vllm.gpu_memory_utilization", "vllm.tensor_parallel_size",
                 "vllm.python", "openai.base_url", "openai.max_concurrency", "openai.timeout_s",
                 "openai.max_retries"},
    "run": {"device", "data.num_workers", "data.eval_batch_size", "data.max_open_shards",
            "trainer.devices", "trainer.strategy", "trainer.num_nodes"},
}


def test_execution_keys_are_not_result_keys_key_by_key():
    """Each execution key alone leaves the tracked part unchanged; the job still gets it."""
    assert WHERE_KEYS["landmarks"] <= set(LANDMARKS_KEYS)
    assert WHERE_KEYS["parsing"] <= set(PARSING_KEYS)
    assert WHERE_KEYS["captions"] <= set(CAPTIONS_KEYS)
    assert WHERE_KEYS["run"] <= set(execution.RUN_EXECUTION_KEYS)
    landmarks = {"backend": "auto", "device": "auto", "batch_size": 64, "fill": "nearest"}
    for key in LANDMARKS_KEYS:
        edited = {**landmarks, key: "cuda:1" if key == "device" else 7}
        assert result_part(edited, LANDMARKS_KEYS) == {"backend": "auto", "fill": "nearest"}
        assert split(edited, LANDMARKS_KEYS)[1][key] == edited[key]
    for backend in ("openai", "vllm"):
        base = CaptionsConfig.from_params({"backend": backend})
        section = {"backend": backend, "openai": {"model": "m"}, "vllm": {"model": "m"}}
        for key in CAPTIONS_KEYS:
            head, _, leaf = key.rpartition(".")
            edited = merge(section, {head: {leaf: 2}} if head else {leaf: 2})
            assert base.result_section(edited) == base.result_section(section), key
        # the backend in use: its model changes the text; the other backend's keys do not
        other = "vllm" if backend == "openai" else "openai"
        assert base.result_section(merge(section, {backend: {"model": "x"}})) != base.result_section(section)
        assert base.result_section(merge(section, {other: {"model": "x"}})) == base.result_section(section)
    for key in execution.RUN_EXECUTION_KEYS:
        block, _, leaf = key.rpartition(".")
        edited = merge(RUN, {block: {leaf: 3}} if block else {leaf: "cpu"})
        assert execution.result_settings(edited) == execution.result_settings(RUN), key
    assert execution.result_settings(merge(RUN, {"optim": {"lr": 0.5}})) != execution.result_settings(RUN)
    assert "datasets" not in execution.result_settings(RUN)


def test_threads_decide_the_dataloader_workers():
    assert execution.job_threads(RUN) == 4  # num_workers unset: 1 process + 3 workers
    assert execution.job_settings(RUN, 4)["data"]["num_workers"] == 3
    assert execution.job_settings(RUN, 8)["data"]["num_workers"] == 7
    assert execution.job_settings(RUN, 1)["data"]["num_workers"] == 0
    pinned = merge(RUN, {"data": {"num_workers": 2}})
    assert execution.job_threads(pinned) == 3 and execution.job_settings(pinned, 8)["data"]["num_workers"] == 2
    cpu = merge(RUN, {"device": "cpu"})
    assert execution.run_devices(cpu) == 0 and execution.job_threads(cpu) == 4
    two = merge(RUN, {"trainer": {"devices": 2}})
    assert execution.run_devices(two) == 2 and execution.job_threads(two) == 8
    assert execution.job_settings(two, 8)["data"]["num_workers"] == 3  # per DDP process
    # evaluation: one process on one GPU, whatever the fold trained on
    assert execution.eval_devices(two) == 1 and execution.eval_devices(cpu) == 0
    assert execution.job_threads(two, processes=1) == 4
    assert execution.eval_settings(two, 4)["data"]["num_workers"] == 3
    assert execution.eval_settings(RUN, 4) == {"device": "auto", "data": {"num_workers": 3}}


def test_rules_declare_threads_and_jobs_get_workers_from_them(finished):
    _, _, listing = finished
    jobs = blocks(listing)
    train = [b for rule, b in jobs if rule == "train"]
    assert train and all(re.search(r"^\s+threads: 4$", b, flags=re.M) for b in train)
    for block in train + [b for rule, b in jobs if rule == "evaluate"]:
        params = json.loads(re.search(r"--params '(\{.*?\})'", block).group(1))
        assert params["data"]["num_workers"] == 3, block
    # every rule of the workflow declares its threads (none falls back to Snakemake's 1 silently)
    for smk in (Path(__file__).resolve().parents[1] / "workflow" / "rules").glob("*.smk"):
        for rule in re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M):
            head = re.match(r"rule (\w+):", rule)
            if head and "shell:" in rule:
                assert re.search(r"^\s+threads:", rule, flags=re.M), f"{smk.name}: {head.group(1)}"


def execution_edited(cfg: dict) -> dict:
    """``cfg`` with every execution key of every stage and of the run changed."""
    edited = copy.deepcopy(cfg)
    for section in ("landmarks", "parsing", "captions"):
        edited[section] = merge(edited.get(section) or {}, EXECUTION_EDITS[section])
    run_edit = copy.deepcopy(EXECUTION_EDITS["run"])
    for key, value in (("devices", 2), ("strategy", "ddp"), ("num_nodes", 2)):
        if trainer_has(key):  # the trainer's multi-GPU keys, where this version has them
            run_edit["trainer"][key] = value
    edited["train"]["runs"]["tiny"] = merge(RUN, run_edit)
    return edited


def test_changing_where_jobs_run_reruns_nothing(project):
    dest, cfg = project
    write_config(dest, execution_edited(cfg))
    out = snakemake(dest, "-n", "--set-threads", "train=8", "evaluate=8")
    assert "Nothing to be done" in out, out[-3000:]


def test_changing_what_a_stage_computes_reruns_it_with_the_new_settings(project):
    """Result keys of parsing and captions changed (and every execution key): exactly those
    stages re-run for their params, what reads them follows, and the jobs get the execution
    settings too."""
    dest, cfg = project
    edited = execution_edited(cfg)
    edited["parsing"]["model"] = "farl/celebm/448"
    edited["captions"]["openai"]["model"] = "another-vlm"
    write_config(dest, edited)
    jobs = blocks(snakemake(dest, "-n", "-p", "--set-threads", "train=8", "evaluate=8"))
    params_changed = {rule for rule, b in jobs if "Params have changed" in b}
    assert params_changed == {"parsing", "captions"}, sorted(params_changed)
    scheduled = {rule for rule, _ in jobs}
    assert "decode" not in scheduled and "landmarks" not in scheduled
    assert {"train", "evaluate", "train_summary", "report"} <= scheduled  # they read the new results
    for rule, block in jobs:
        if rule == "captions":
            assert '"base_url": "http://10.0.0.9:9000/v1"' in block and '"max_concurrency": 2' in block
            assert '"model": "another-vlm"' in block
        if rule == "parsing":
            assert '"device": "cuda:1"' in block and '"model": "farl/celebm/448"' in block
        if rule in ("train", "evaluate"):
            params = json.loads(re.search(r"--params '(\{.*?\})'", block).group(1))
            assert params["device"] == "cpu" and params["data"]["num_workers"] == 5, block
            assert params["data"]["eval_batch_size"] == 64
            assert re.search(r"^\s+threads: 8$", block, flags=re.M)
