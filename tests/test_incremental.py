"""Incremental re-runs through Snakemake: only the shards whose clips changed run again.

A tiny project (5 demo clips, 4 shards, 4 frames of 32 px) is decoded for real once per module
with ``snakemake --snakefile <repo>/Snakefile --directory TMP decode_all``; each test then works
on its own copy of that project (metadata, mtimes and all) and asks ``snakemake -n`` what it
would run. Shard manifests are synced while the Snakefile is parsed and rewritten only when
their bytes change (``docs/architecture.md``), which is what these tests pin down.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from dfer.core.sharding import shard_name, shard_of

REPO = Path(__file__).resolve().parents[1]
NUM_SHARDS = 4
ALL_SHARDS = {shard_name(i) for i in range(NUM_SHARDS)}

CONFIG = {
    "results": "results",
    "datasets": ["demo"],
    "dataset_defs": {
        "demo": {
            "layout": "demo",
            "root": "data/demo",
            "split_files": ["data/demo/manifest.csv"],
            "num_shards": NUM_SHARDS,
            "generate_demo": True,
            "demo_seed": 0,
            "demo_clips_per_class": 1,
        },
    },
    "decode": {"num_frames": 4, "size": 32},
}


def snakemake(project: Path, *args: str) -> str:
    """Run Snakemake on the repository's Snakefile in ``project``; stdout + stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(project), "--cores", "2", *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def scheduled(dry_run_output: str) -> dict[str, set[str]]:
    """Rule name -> shard labels (or {""} for rules without a shard) a dry run lists."""
    jobs: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if m:
            shard = re.search(r"wildcards:.*\bshard=(\d{3})", block)
            jobs.setdefault(m.group(1), set()).add(shard.group(1) if shard else "")
    return jobs


def mtimes(folder: Path, pattern: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob(pattern))}


@pytest.fixture(scope="module")
def decoded_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose demo data has been generated and decoded (decode_all) for real."""
    project = tmp_path_factory.mktemp("project")
    (project / "config").mkdir()
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    snakemake(project, "decode_all")
    return project


@pytest.fixture
def project(decoded_project: Path, tmp_path: Path) -> Path:
    """A private copy of the decoded project (timestamps and Snakemake metadata kept)."""
    copy = tmp_path / "project"
    shutil.copytree(decoded_project, copy, symlinks=True)
    return copy


def _two_new_clip_ids() -> tuple[str, str]:
    """Two new ids in two different shards, leaving other shards untouched."""
    first = "happiness_900"
    second = next(f"surprise_{i}" for i in range(901, 999)
                  if shard_of(f"surprise_{i}", NUM_SHARDS) != shard_of(first, NUM_SHARDS))
    return first, second


def test_decode_all_decoded_every_clip(decoded_project):
    frames = decoded_project / "results" / "demo" / "frames"
    ids = []
    for shard in sorted(ALL_SHARDS):
        index = pq.read_table(frames / f"shard-{shard}.parquet").to_pylist()
        assert all(shard_of(r["clip_id"], NUM_SHARDS) == int(shard) for r in index)
        assert all(len(r["frame_indices"]) == 4 for r in index)
        ids += [r["clip_id"] for r in index]
        assert pq.read_table(frames / f"shard-{shard}.failures.parquet").num_rows == 0
    assert sorted(ids) == sorted(f"{c}_000" for c in
                                 ("happiness", "sadness", "neutral", "anger", "surprise"))
    kinds = {r["source_kind"] for s in ALL_SHARDS
             for r in pq.read_table(frames / f"shard-{s}.parquet").to_pylist()}
    assert kinds == {"video", "frames"}  # the demo holds both input kinds


def test_copied_project_is_up_to_date_and_reparse_rewrites_nothing(project):
    manifests = project / "results" / "demo" / "manifest"
    before = mtimes(manifests, "*.parquet")
    out = snakemake(project, "-n", "decode_all")
    assert "Nothing to be done" in out, out[-2000:]
    assert scheduled(out) == {}
    assert mtimes(manifests, "*.parquet") == before


def test_adding_two_clips_reruns_only_their_shards(project):
    data = project / "data" / "demo"
    results = project / "results" / "demo"
    a, b = _two_new_clip_ids()
    shutil.copy2(data / "videos" / "happiness_000.mp4", data / "videos" / f"{a}.mp4")
    shutil.copytree(data / "frames" / "anger_000", data / "frames" / b)
    with open(data / "manifest.csv", "a", encoding="utf-8") as fh:
        # fold 1, like the others: a new fold would change num_folds in every shard manifest
        fh.write(f"{a},videos/{a}.mp4,happiness,1\n{b},frames/{b},surprise,1\n")
    expected = {shard_name(shard_of(a, NUM_SHARDS)), shard_name(shard_of(b, NUM_SHARDS))}
    assert len(expected) == 2
    manifests_before = mtimes(results / "manifest", "shard-*.parquet")
    frames_before = mtimes(results / "frames", "shard-*")

    jobs = scheduled(snakemake(project, "-n", "decode_all"))
    assert jobs == {"decode": expected, "decode_all": {""}}
    manifests_after = mtimes(results / "manifest", "shard-*.parquet")
    for name, mtime in manifests_before.items():
        changed = name[len("shard-"):-len(".parquet")] in expected
        assert (manifests_after[name] != mtime) == changed, name

    snakemake(project, "decode_all")  # the real re-run touches only those shards' outputs
    frames_after = mtimes(results / "frames", "shard-*")
    for name, mtime in frames_before.items():
        assert (frames_after[name] != mtime) == (name[6:9] in expected), name
    for clip_id in (a, b):
        shard = shard_name(shard_of(clip_id, NUM_SHARDS))
        ids = pq.read_table(results / "frames" / f"shard-{shard}.parquet").column("clip_id")
        assert clip_id in ids.to_pylist()
    assert "Nothing to be done" in snakemake(project, "-n", "decode_all")


def test_changing_a_decode_param_reruns_every_shard(project):
    config_file = project / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    config["decode"]["size"] = 40
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    manifests_before = mtimes(project / "results" / "demo" / "manifest", "*.parquet")
    out = snakemake(project, "-n", "decode_all")
    assert scheduled(out) == {"decode": ALL_SHARDS, "decode_all": {""}}
    assert "Params have changed" in out
    # the manifests do not depend on decode params: untouched
    assert mtimes(project / "results" / "demo" / "manifest", "*.parquet") == manifests_before


def test_replacing_one_video_reruns_only_its_shard(project):
    data = project / "data" / "demo"
    target = "happiness_000"
    shutil.copy(data / "videos" / "sadness_000.mp4", data / "videos" / f"{target}.mp4")
    out = snakemake(project, "-n", "decode_all")
    assert scheduled(out) == {"decode": {shard_name(shard_of(target, NUM_SHARDS))},
                              "decode_all": {""}}
