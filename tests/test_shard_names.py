"""Shard names have one definition (dfer.core.sharding) used by the rules and the library alike.

Names are zero-padded to the width of a dataset's largest shard index, at least 3 digits, so
the names of datasets of up to 1000 shards are unchanged (``"000"``) and a dataset of 1200 shards
is named ``"0000" ... "1199"``: one width per dataset, so names sort as strings in shard order.
A 1200-shard config goes through ``snakemake -n`` (every shard scheduled under its name) and
through the training reader (it finds the shards past 999).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from dfer.core.sharding import (
    SHARD_REGEX,
    shard_file_regex,
    shard_name,
    shard_names,
    shard_of,
    shard_width,
    shards_in,
)
from dfer.pipeline import prepare_datasets
from dfer.train.data import dataset_shards

REPO = Path(__file__).resolve().parents[1]
MANY = 1200


def demo_config(num_shards: int) -> dict:
    return {
        "results": "results",
        "datasets": ["demo"],
        "dataset_defs": {
            "demo": {
                "layout": "demo", "root": "data/demo", "split_files": ["data/demo/manifest.csv"],
                "num_shards": num_shards, "generate_demo": True, "demo_clips_per_class": 1,
            },
        },
        "decode": {"num_frames": 2, "size": 32},
    }


def test_names_below_1000_shards_are_unchanged():
    assert shard_names(4) == ["000", "001", "002", "003"]
    assert shard_names(1000)[-1] == "999" and shard_width(1000) == 3
    assert shard_name(7) == shard_name(7, 64) == "007"


def test_names_past_999_are_padded_to_one_width_and_sort_in_shard_order():
    names = shard_names(MANY)
    assert names[0] == "0000" and names[999] == "0999" and names[1000] == "1000" and names[-1] == "1199"
    assert len(set(names)) == MANY and sorted(names) == names
    assert {len(n) for n in names} == {4}
    assert shard_names(4096)[-1] == "4095"  # the schema's largest num_shards
    assert all(re.fullmatch(SHARD_REGEX, n) for n in names)
    with pytest.raises(ValueError):
        shard_name(1000)  # without num_shards the width is unknown
    with pytest.raises(ValueError):
        shard_name(MANY, MANY)


def test_shard_file_pattern_matches_shard_files_only(tmp_path):
    pattern = shard_file_regex(".parquet")
    assert pattern.match("shard-1000.parquet").group(1) == "1000"
    assert pattern.match("shard-007.parquet").group(1) == "007"
    for other in ("shard-07.parquet", "shard-000.failures.parquet", "shard-abc.parquet",
                  "manifest.parquet"):
        assert not pattern.match(other), other
    for name in ("shard-1000.parquet", "shard-0999.parquet", "shard-0002.parquet",
                 "shard-0002.failures.parquet", "manifest.parquet"):
        (tmp_path / name).write_bytes(b"")
    assert shards_in(tmp_path, ".parquet") == ["0002", "0999", "1000"]
    assert shards_in(tmp_path / "missing") == []


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory) -> Path:
    """A project whose tiny demo dataset (5 clips) is split into 1200 shards, synced."""
    project = tmp_path_factory.mktemp("many-shards")
    (project / "config").mkdir()
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(demo_config(MANY)))
    return project


def test_snakemake_schedules_every_one_of_1200_shards(many_shards):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(many_shards), "--cores", "1", "--nocolor", "-n", "decode_all"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    scheduled = re.findall(r"wildcards: dataset=demo, shard=(\w+)", out)
    assert sorted(scheduled) == shard_names(MANY)
    for shard in ("0000", "0999", "1000", "1199"):
        assert f"results/demo/frames/shard-{shard}.parquet" in out


def test_training_reader_finds_shards_past_999(many_shards):
    results = many_shards / "results"  # synced by the dry run's parse (or now, if run alone)
    cwd = os.getcwd()
    os.chdir(many_shards)
    try:
        assert prepare_datasets(demo_config(MANY))["demo"] == shard_names(MANY)
    finally:
        os.chdir(cwd)
    shards = dataset_shards(results, "demo")
    assert shards == shard_names(MANY)
    # the clips are where their hash puts them, also in shards past 999
    rows = {s: pq.read_table(results / "demo" / "manifest" / f"shard-{s}.parquet").column("clip_id").to_pylist()
            for s in shards}
    placed = {cid: s for s, ids in rows.items() for cid in ids}
    assert len(placed) == 5
    assert all(s == shard_name(shard_of(cid, MANY), MANY) for cid, s in placed.items())


def test_resharding_removes_the_shards_of_the_old_width(many_shards):
    """Going from 1200 to 4 shards renames every shard; the old manifests go, none linger."""
    folder = many_shards / "results" / "demo" / "manifest"
    cwd = os.getcwd()
    os.chdir(many_shards)
    try:
        prepare_datasets(demo_config(MANY))
        assert len(shards_in(folder)) == MANY
        prepare_datasets(demo_config(4))
    finally:
        os.chdir(cwd)
    assert shards_in(folder) == ["000", "001", "002", "003"]
    assert dataset_shards(many_shards / "results", "demo") == ["000", "001", "002", "003"]
