"""Cluster and local Snakemake profiles: parsed settings, dry run, and real sbatch calls.

There is no SLURM here, so the submission test puts a test-double ``sbatch`` on PATH that
records its arguments and refuses the job: the SLURM executor plugin still builds and issues
the real sbatch command line for every ready job, which is what decides whether a GPU rule
gets its GPU (``--gpus=N``), partition, account, memory and time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from project_copy import copy_project
from snakemake.profiles import ProfileConfigFileParser

from dfer.core.sharding import SHARD_REGEX

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
LOCAL_PROFILE = REPO / "workflow" / "profiles" / "local" / "config.yaml"
PROFILE_ENV = ("DFER_SLURM_ACCOUNT", "DFER_SLURM_PARTITION", "DFER_SLURM_GPU_PARTITION",
               "DFER_SLURM_JOBS", "SNAKEMAKE_SLURM_PARTITIONS", "DFER_LOCAL_GPUS",
               "CUDA_VISIBLE_DEVICES")

FAKE_SBATCH = """#!/bin/sh
# Test double: record the submission and refuse it; nothing runs.
printf '%s\\n' "$*" >> "$FAKE_SBATCH_LOG"
echo "sbatch: error: test double, nothing submitted" >&2
exit 1
"""
FAKE_SACCTMGR = """#!/bin/sh
# Test double: the user's only account is the one the test configured.
echo "${DFER_SLURM_ACCOUNT:-none}"
"""


def parse_profile(path: Path, monkeypatch, **env: str) -> dict:
    """The command-line settings Snakemake derives from a profile under ``env``."""
    for name in PROFILE_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with open(path) as fh:
        return dict(ProfileConfigFileParser().parse(fh))


def rule_resources(settings: dict, rule: str) -> dict[str, str]:
    """``set-resources`` entries of one rule as {resource: expression}."""
    out = {}
    for item in settings.get("set-resources", []):
        name, _, assignment = item.partition(":")
        if name == rule:
            key, _, value = assignment.partition("=")
            out[key] = value
    return out


def gpu_rules() -> set[str]:
    """Rules in workflow/rules/*.smk whose resources declare gpu=..."""
    found = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M):
            head = re.match(r"rule (\w+):", block)
            if head and re.search(r"^\s+gpu\s*=", block, flags=re.M):
                found.add(head.group(1))
    return found


def test_slurm_profile_defaults(monkeypatch):
    settings = parse_profile(SLURM_PROFILE, monkeypatch)
    assert settings["executor"] == "slurm"
    assert settings["jobs"] == "100"
    defaults = settings["default-resources"]
    assert "runtime=60" in defaults and "mem_mb=4000 * attempt" in defaults
    assert not any(d.startswith(("slurm_account", "slurm_partition")) for d in defaults)
    assert "slurm_partition" not in rule_resources(settings, "decode")
    for rule in ("landmarks", "parsing", "captions", "train"):
        assert rule_resources(settings, rule)["slurm_partition"] == "'gpu'", rule
    # only decode's threads differ on a cluster (FFmpeg's decoder threads); every other rule
    # asks for the threads its rule declares, i.e. what its job uses
    assert settings["set-threads"] == ["decode=2"]


def test_slurm_profile_takes_cluster_settings_from_environment(monkeypatch):
    settings = parse_profile(SLURM_PROFILE, monkeypatch, DFER_SLURM_ACCOUNT="proj42",
                             DFER_SLURM_PARTITION="all", DFER_SLURM_GPU_PARTITION="a100",
                             DFER_SLURM_JOBS="7")
    assert settings["jobs"] == "7"
    # Quoted: resource values are Python expressions and `all` would be the builtin.
    assert "slurm_account='proj42'" in settings["default-resources"]
    assert "slurm_partition='all'" in settings["default-resources"]
    assert rule_resources(settings, "parsing")["slurm_partition"] == "'a100'"

    same = parse_profile(SLURM_PROFILE, monkeypatch, DFER_SLURM_GPU_PARTITION="")
    assert "slurm_partition" not in rule_resources(same, "landmarks")
    auto = parse_profile(SLURM_PROFILE, monkeypatch, SNAKEMAKE_SLURM_PARTITIONS="/p.yaml")
    assert "slurm_partition" not in rule_resources(auto, "train")


def test_every_gpu_rule_gets_a_gpu_partition(monkeypatch):
    rules = gpu_rules()
    assert {"landmarks", "parsing"} <= rules
    settings = parse_profile(SLURM_PROFILE, monkeypatch)
    missing = sorted(r for r in rules if "slurm_partition" not in rule_resources(settings, r))
    assert not missing, f"GPU rules without a GPU partition in the slurm profile: {missing}"


def test_local_profile_limits_gpu_jobs_to_the_gpu_count(monkeypatch):
    assert parse_profile(LOCAL_PROFILE, monkeypatch, DFER_LOCAL_GPUS="2")["resources"] == [
        "gpu=2"]
    visible = parse_profile(LOCAL_PROFILE, monkeypatch, CUDA_VISIBLE_DEVICES="0,3,5")
    assert visible["resources"] == ["gpu=3"] and visible["cores"] == "all"
    none = parse_profile(LOCAL_PROFILE, monkeypatch, CUDA_VISIBLE_DEVICES="")
    assert "resources" not in none  # no GPU: CPU jobs are not serialised on a fake resource
    pinned = parse_profile(LOCAL_PROFILE, monkeypatch, DFER_LOCAL_GPUS="0", CUDA_VISIBLE_DEVICES="0")
    assert "resources" not in pinned  # the override wins over what the machine shows


def test_local_gpu_count_is_one_check_with_an_override():
    from dfer.pipeline import local_gpu_count

    assert local_gpu_count({"DFER_LOCAL_GPUS": "3"}) == 3
    assert local_gpu_count({"DFER_LOCAL_GPUS": "0", "CUDA_VISIBLE_DEVICES": "0,1"}) == 0
    assert local_gpu_count({"CUDA_VISIBLE_DEVICES": "0,1"}) == 2
    assert local_gpu_count({"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    assert local_gpu_count({"CUDA_VISIBLE_DEVICES": ""}) == 0
    with pytest.raises(ValueError, match="DFER_LOCAL_GPUS"):
        local_gpu_count({"DFER_LOCAL_GPUS": "many"})


# --- Snakemake runs on a copy of the demo project ---------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the workflow with a one-clip-per-class demo dataset, manifests synced."""
    dest = tmp_path_factory.mktemp("cluster") / "project"
    # Demo data and shard manifests now, so that later runs do not rewrite the manifests
    # after a test has faked the decode outputs (which would then look out of date).
    copy_project(dest, clips_per_class=1, sync=True)
    # Pinned backends; `auto` is tested on its own (it asks for a GPU on a cluster executor).
    (dest / "config" / "gpu.yaml").write_text(
        "landmarks: {backend: face_alignment}\nparsing: {backend: facer}\n")
    (dest / "config" / "cpu.yaml").write_text(
        "landmarks: {backend: dlib}\nparsing: {backend: landmarks}\n")
    fake = dest / "fakebin"
    fake.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("sacctmgr", FAKE_SACCTMGR)):
        (fake / name).write_text(text)
        (fake / name).chmod(0o755)
    return dest


def snakemake(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PROFILE_ENV}
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", *args], cwd=project,
                          env=clean, capture_output=True, text=True, timeout=300)


def job_resources(output: str) -> dict[str, list[str]]:
    """rule name -> the `resources:` lines of its jobs in Snakemake's job listing."""
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=rule \w+:)", output):
        head = re.match(r"rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        if head and res:
            jobs.setdefault(head.group(1), []).append(res.group(1))
    return jobs


def test_dry_run_with_slurm_profile_shows_gpu_resources(project):
    proc = snakemake(project, "--profile", "workflow/profiles/slurm", "-n", "--forceall",
                     "--configfile=config/gpu.yaml", "decode_all", "landmarks_all", "parsing_all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_resources(proc.stdout + proc.stderr)
    assert len(jobs["decode"]) == len(jobs["landmarks"]) == len(jobs["parsing"]) == 4
    for rule in ("landmarks", "parsing"):
        for line in jobs[rule]:
            assert "gpu=1" in line and "slurm_partition=gpu" in line, line
            assert "mem_mb=16000" in line and "runtime=120" in line
    for line in jobs["decode"]:
        assert "gpu=" not in line and "slurm_partition" not in line and "mem_mb=8000" in line


def fake_submissions(project: Path, *args: str, **env: str) -> dict[str, list[str]]:
    """Run with the test-double sbatch; return rule -> recorded sbatch argument lines."""
    results = project / "results" / "demo"
    for stage in ("frames", "landmarks", "parsing"):
        shutil.rmtree(results / stage, ignore_errors=True)
    # Pretend decode ran for every shard and landmarks for shards 002/003: the ready jobs
    # are then landmarks of shards 000/001 and parsing of shards 002/003.
    for shard in ("000", "001", "002", "003"):
        for suffix in ("safetensors", "parquet", "failures.parquet"):
            (results / "frames").mkdir(parents=True, exist_ok=True)
            (results / "frames" / f"shard-{shard}.{suffix}").write_bytes(b"")
    for shard in ("002", "003"):
        for suffix in ("parquet", "failures.parquet"):
            (results / "landmarks").mkdir(parents=True, exist_ok=True)
            (results / "landmarks" / f"shard-{shard}.{suffix}").write_bytes(b"")
    log = project / "sbatch.log"
    log.unlink(missing_ok=True)
    path = f"{project / 'fakebin'}{os.pathsep}{os.environ['PATH']}"
    proc = snakemake(project, "--profile", "workflow/profiles/slurm", "--retries", "0",
                     "--slurm-init-seconds-before-status-checks", "1", *args, "parsing_all",
                     PATH=path, FAKE_SBATCH_LOG=str(log), **env)
    assert proc.returncode != 0  # every submission was refused by the test double
    assert "SLURM sbatch failed" in proc.stderr, proc.stderr[-3000:]
    calls: dict[str, list[str]] = {}
    for line in log.read_text().splitlines():
        found = re.search(rf"--comment rule_(\w+?)_wildcards_demo_({SHARD_REGEX})", line)
        assert found, line
        calls.setdefault(found.group(1), []).append(line.split(" --wrap=")[0])
    return calls


def test_sbatch_gets_gpus_partition_and_account_for_gpu_rules(project):
    calls = fake_submissions(project, "--configfile=config/gpu.yaml", DFER_SLURM_ACCOUNT="proj42",
                             DFER_SLURM_PARTITION="cpuq", DFER_SLURM_GPU_PARTITION="a100")
    assert sorted(calls) == ["landmarks", "parsing"]
    assert len(calls["landmarks"]) == len(calls["parsing"]) == 2
    for line in calls["landmarks"] + calls["parsing"]:
        args = line.split()
        assert "--gpus=1" in args and "-p" in args and args[args.index("-p") + 1] == "a100"
        assert args[args.index("-A") + 1] == "proj42"
        assert args[args.index("--mem") + 1] == "16000" and args[args.index("-t") + 1] == "120"
        assert "--cpus-per-task=1" in args  # the rules' threads: one loop feeding the GPU


def test_cpu_backends_submit_no_gpu_request(project):
    calls = fake_submissions(project, "--configfile=config/cpu.yaml",
                             DFER_SLURM_ACCOUNT="proj42", DFER_SLURM_PARTITION="cpuq",
                             DFER_SLURM_GPU_PARTITION="")
    assert sorted(calls) == ["landmarks", "parsing"]
    for line in calls["landmarks"] + calls["parsing"]:
        args = line.split()
        assert not any(a.startswith(("--gpus", "--gres")) for a in args), line
        assert args[args.index("-p") + 1] == "cpuq"


def test_auto_backends_ask_for_a_gpu_on_the_cluster_but_not_locally(project):
    """`auto` is decided on the compute node; the login node parsing the workflow has no GPU
    but jobs submitted through a cluster executor still ask for one."""
    calls = fake_submissions(project, DFER_SLURM_ACCOUNT="proj42", DFER_SLURM_GPU_PARTITION="a100")
    assert sorted(calls) == ["landmarks", "parsing"]
    for line in calls["landmarks"] + calls["parsing"]:
        assert "--gpus=1" in line.split(), line
    # Locally `auto` asks for a GPU only where one is found: pinned both ways, so the test does
    # not depend on the machine it runs on (a container may show NVIDIA device files).
    for gpus, want in (("0", "gpu=0"), ("1", "gpu=1")):
        local = snakemake(project, "--cores", "1", "-n", "--forceall", "landmarks_all", "parsing_all",
                          DFER_LOCAL_GPUS=gpus)
        assert local.returncode == 0, local.stderr[-3000:]
        jobs = job_resources(local.stdout + local.stderr)
        for rule in ("landmarks", "parsing"):
            assert jobs[rule] and all(want in line for line in jobs[rule]), (gpus, jobs[rule])
