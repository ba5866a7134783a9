"""What SLURM jobs ask for and what a job on a node does (issue 23: profile, grouping, parse).

Submissions go to the test-double ``sbatch`` of ``test_cluster_profile.py`` (it records the
command line and refuses the job), so the real command lines of snakemake-executor-plugin-slurm
are checked: GPUs per fold (``trainer.devices``) and per vLLM caption job
(``tensor_parallel_size``), CPUs that match the jobs' threads, time that grows with the attempt,
and grouped shard jobs. A job on a node runs Snakemake in ``--mode remote``: it neither
re-syncs the manifests nor places GPUs itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from project_copy import copy_project
from test_cluster_profile import (
    FAKE_SACCTMGR,
    FAKE_SBATCH,
    PROFILE_ENV,
    SLURM_PROFILE,
    parse_profile,
)

SHARDS = ("000", "001", "002", "003")
STAGE_FILES = {"frames": ("safetensors", "parquet", "failures.parquet"),
               "landmarks": ("parquet", "failures.parquet"),
               "parsing": ("safetensors", "parquet", "failures.parquet"),
               "captions": ("parquet", "failures.parquet")}


def trainer_has(key: str) -> bool:
    from dfer.train.config import TrainerConfig

    return key in TrainerConfig.__dataclass_fields__


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("jobs") / "project"
    copy_project(dest, clips_per_class=1, sync=True)
    fake = dest / "fakebin"
    fake.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("sacctmgr", FAKE_SACCTMGR)):
        (fake / name).write_text(text)
        (fake / name).chmod(0o755)
    return dest


def run(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PROFILE_ENV}
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", *args], cwd=project,
                          env=clean, capture_output=True, text=True, timeout=300)


def outputs(project: Path, present: dict[str, tuple[str, ...]]) -> None:
    """Exactly these stage outputs exist (empty files): stage -> shards."""
    results = project / "results" / "demo"
    for stage, suffixes in STAGE_FILES.items():
        shutil.rmtree(results / stage, ignore_errors=True)
        (results / stage).mkdir(parents=True)
        for shard in present.get(stage, ()):
            for suffix in suffixes:
                (results / stage / f"shard-{shard}.{suffix}").write_bytes(b"")


def submissions(project: Path, *args: str, **env: str) -> list[dict]:
    """Run with the slurm profile and the test-double sbatch; one dict per sbatch call:
    its arguments and the Snakemake targets (``--target-jobs``) of the job it would run."""
    log = project / "sbatch.log"
    log.unlink(missing_ok=True)
    env = {"PATH": f"{project / 'fakebin'}{os.pathsep}{os.environ['PATH']}", "FAKE_SBATCH_LOG": str(log),
           "DFER_SLURM_ACCOUNT": "proj42", "DFER_SLURM_PARTITION": "cpuq",
           "DFER_SLURM_GPU_PARTITION": "a100", **env}
    proc = run(project, *args, "--profile", "workflow/profiles/slurm",
               "--slurm-init-seconds-before-status-checks", "1", **env)
    assert proc.returncode != 0 and log.exists(), proc.stderr[-3000:]  # every submission refused
    calls = []
    for line in log.read_text().splitlines():
        head, _, wrap = line.partition(" --wrap=")
        targets = re.search(r"--target-jobs (.*?) --allowed-rules", wrap).group(1)
        calls.append({"args": head.split(), "targets": sorted(re.findall(r"'([^']+)'", targets)),
                      "wrap": wrap})
    return calls


def arg(call: dict, flag: str) -> str:
    args = call["args"]
    return args[args.index(flag) + 1]


def test_profile_groups_short_shard_jobs_only_when_asked(monkeypatch):
    plain = parse_profile(SLURM_PROFILE, monkeypatch)
    assert "groups" not in plain and "group-components" not in plain
    assert plain["set-threads"] == ["decode=2"]  # the rest ask for what their rules declare
    grouped = parse_profile(SLURM_PROFILE, monkeypatch, DFER_SLURM_GROUP="8")
    assert grouped["groups"] == ["decode=decode_shards", "landmarks=face_shard", "parsing=face_shard"]
    assert grouped["group-components"] == ["decode_shards=8"]


def test_train_asks_for_its_gpus_and_more_time_after_a_time_out(project, tmp_path):
    devices = 2 if trainer_has("devices") else 1  # the trainer's multi-GPU keys, where present
    run = {"data": {"num_workers": 5}, **({"trainer": {"devices": devices}} if devices > 1 else {})}
    overlay = tmp_path / "train.yaml"
    overlay.write_text(yaml.safe_dump({"train": {"runs": {"demo_tiny": run}}}))
    outputs(project, {stage: SHARDS for stage in STAGE_FILES})
    calls = submissions(project, "train_all", f"--configfile={overlay}", "--retries", "1")
    # the one fold of a 1-clip-per-class demo, twice: the test double refuses the first attempt
    assert [c["targets"] for c in calls] == [["train:dataset=demo,run=demo_tiny,fold=1"]] * 2
    assert [arg(c, "-t") for c in calls] == ["1440", "2880"]  # runtime x attempt
    assert [arg(c, "--mem") for c in calls] == ["64000", "128000"]
    for call in calls:
        assert f"--gpus={devices}" in call["args"] and arg(call, "-p") == "a100"
        # per GPU: 5 DataLoader workers + the process feeding the model
        assert f"--cpus-per-task={6 * devices}" in call["args"]


def test_vllm_captions_ask_for_one_gpu_per_tensor_parallel_rank(project, tmp_path):
    overlay = tmp_path / "vllm.yaml"
    overlay.write_text(yaml.safe_dump({"captions": {"backend": "vllm", "vllm": {"tensor_parallel_size": 2}}}))
    outputs(project, {"frames": SHARDS, "landmarks": SHARDS})
    calls = submissions(project, "captions_all", f"--configfile={overlay}", "--retries", "0")
    assert sorted(c["targets"][0] for c in calls) == [f"captions:dataset=demo,shard={s}" for s in SHARDS]
    for call in calls:
        assert "--gpus=2" in call["args"] and "--cpus-per-task=4" in call["args"]


def test_grouped_shard_jobs_share_slurm_jobs(project, tmp_path):
    """DFER_SLURM_GROUP=2: two decode shards per job (CPUs and memory add up), and a shard's
    landmarks + parsing in one job on one GPU (time adds up)."""
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text("landmarks: {backend: face_alignment}\nparsing: {backend: facer}\n")
    outputs(project, {"frames": ("002", "003")})  # decode ready for 000/001, landmarks for 002/003
    calls = submissions(project, "parsing_all", f"--configfile={gpu}", "--retries", "0",
                        DFER_SLURM_GROUP="2")
    decode = [c for c in calls if c["targets"][0].startswith("decode:")]
    face = [c for c in calls if c["targets"][0].startswith("landmarks:")]
    assert len(calls) == 3 and len(decode) == 1 and len(face) == 2
    assert decode[0]["targets"] == ["decode:dataset=demo,shard=000", "decode:dataset=demo,shard=001"]
    assert "--cpus-per-task=4" in decode[0]["args"] and arg(decode[0], "--mem") == "16000"
    assert not any(a.startswith("--gpus") for a in decode[0]["args"])
    for call, shard in zip(sorted(face, key=lambda c: c["targets"]), ("002", "003"), strict=True):
        assert call["targets"] == [f"landmarks:dataset=demo,shard={shard}", f"parsing:dataset=demo,shard={shard}"]
        assert "--gpus=1" in call["args"] and arg(call, "-t") == "240" and arg(call, "-p") == "a100"
    assert all("--mode 'remote'" in c["wrap"] for c in calls)  # what runs on the node


def test_a_job_on_a_node_neither_resyncs_nor_places_gpus(project, tmp_path):
    """`--mode remote` (the command every SLURM job runs): the manifests stay as the
    submitting run left them even though a clip was added, and the scheduler's GPUs stand;
    the same job run by a local Snakemake gets DFER_JOB_GPUS."""
    project = shutil.copytree(project, tmp_path / "copy", symlinks=True)  # its data changes
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text("landmarks: {backend: face_alignment}\n")
    outputs(project, {"frames": SHARDS})
    data = project / "data" / "demo"
    shutil.copy2(data / "videos" / "sadness_000.mp4", data / "videos" / "sadness_900.mp4")
    with open(data / "manifest.csv", "a", encoding="utf-8") as fh:
        fh.write("sadness_900,videos/sadness_900.mp4,sadness,1\n")
    manifests = project / "results" / "demo" / "manifest"
    before = {p.name: p.stat().st_mtime_ns for p in manifests.iterdir()}
    job = ["--target-jobs", "landmarks:dataset=demo,shard=000", "--allowed-rules", "landmarks",
           "--cores", "all", "--force", "--nolock", "-n", "-p", f"--configfile={gpu}"]
    remote = run(project, *job, "--mode", "remote", DFER_LOCAL_GPUS="2")
    assert remote.returncode == 0, remote.stderr[-3000:]
    command = re.search(r"^Shell command: (.*)$", remote.stdout + remote.stderr, flags=re.M).group(1)
    assert "python -m dfer landmarks" in command and "DFER_JOB_GPUS" not in command
    assert {p.name: p.stat().st_mtime_ns for p in manifests.iterdir()} == before
    local = run(project, *job, DFER_LOCAL_GPUS="2")
    assert local.returncode == 0, local.stderr[-3000:]
    assert "DFER_JOB_GPUS=1 PYTHONPATH=" in local.stdout + local.stderr
    assert {p.name: p.stat().st_mtime_ns for p in manifests.iterdir()} != before  # synced here
