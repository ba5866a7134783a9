"""Manifest sync: deterministic shards, only changed shards rewritten, empty shards, CLI."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from dfer.cli import main as cli_main
from dfer.core.sharding import shard_of
from dfer.manifests import MANIFEST_COLUMNS, read_manifest, sync_dataset
from dfer.manifests.sync import sync_report


def make_dataset(tmp_path: Path, clip_ids: list[str], num_shards: int = 8) -> dict:
    root = tmp_path / "data"
    lines = ["clip_id,path,label,fold"]
    labels = ("happiness", "sadness", "neutral", "anger", "surprise")
    for n, cid in enumerate(clip_ids):
        video = root / "videos" / f"{cid}.mp4"
        if not video.exists():
            video.parent.mkdir(parents=True, exist_ok=True)
            video.write_bytes(cid.encode())
        lines.append(f"{cid},videos/{cid}.mp4,{labels[n % 5]},{n % 5 + 1}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return {"layout": "demo", "root": str(root), "split_files": [str(root / "manifest.csv")],
            "num_shards": num_shards}


def shard_state(results: Path, dataset: str) -> dict[str, tuple[int, bytes]]:
    folder = results / dataset / "manifest"
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.glob("shard-*"))}


def test_sync_writes_every_shard_including_empty_ones(tmp_path):
    definition = make_dataset(tmp_path, ["c0", "c1", "c2"], num_shards=8)
    results = tmp_path / "results"
    shards = sync_dataset("demo", definition, results)
    assert shards == [f"{i:03d}" for i in range(8)]
    total = 0
    for s in shards:
        df, meta = read_manifest(results / "demo" / "manifest" / f"shard-{s}.parquet")
        assert list(df.columns) == list(MANIFEST_COLUMNS)
        assert meta["shard"] == s and meta["labels"][0] == "happiness"
        assert meta["stage"] == "manifest" and meta["num_folds"] == 3
        assert all(shard_of(c, 8) == int(s) for c in df["clip_id"])
        total += len(df)
    assert total == 3  # 3 clips over 8 shards: at least 5 empty shard files, all valid
    full, meta = read_manifest(results / "demo" / "manifest" / "manifest.parquet")
    assert list(full["clip_id"]) == ["c0", "c1", "c2"]
    assert meta["num_clips"] == 3 and meta["layout"] == "demo" and meta["dataset"] == "demo"
    schema = pq.read_schema(results / "demo" / "manifest" / "shard-000.parquet")
    assert str(schema.field("label_idx").type) == "int32"
    assert str(schema.field("mtime_ns").type) == "int64"


def test_sharding_is_deterministic_and_output_byte_identical(tmp_path):
    ids = [f"clip{i:03d}" for i in range(40)]
    definition = make_dataset(tmp_path, ids, num_shards=4)
    a, b = tmp_path / "ra", tmp_path / "rb"
    sync_dataset("demo", definition, a)
    sync_dataset("demo", definition, b)
    for name in ("manifest.parquet", "shard-000.parquet", "shard-003.parquet"):
        assert (a / "demo/manifest" / name).read_bytes() == (b / "demo/manifest" / name).read_bytes()
    full, _ = read_manifest(a / "demo/manifest/manifest.parquet")
    assert list(full["shard"]) == [shard_of(c, 4) for c in ids]
    assert list(full["clip_id"]) == sorted(ids)


def test_adding_two_clips_rewrites_only_their_shards(tmp_path):
    ids = [f"clip{i:03d}" for i in range(30)]
    definition = make_dataset(tmp_path, ids, num_shards=16)
    results = tmp_path / "results"
    first = sync_report("demo", definition, results)
    assert sorted(first.changed) == first.shards
    before = shard_state(results, "demo")
    time.sleep(0.01)

    new = ["zz_new_a", "zz_new_b"]
    definition = make_dataset(tmp_path, ids + new, num_shards=16)
    report = sync_report("demo", definition, results)
    touched = sorted({f"{shard_of(c, 16):03d}" for c in new})
    assert report.changed == touched
    assert report.manifest_changed
    after = shard_state(results, "demo")
    for name, (mtime, data) in after.items():
        if name[6:9] in touched:
            assert data != before[name][1]
        else:  # unchanged shards keep bytes AND mtime
            assert (mtime, data) == before[name], name
    again = sync_report("demo", definition, results)
    assert again.changed == [] and not again.manifest_changed


def test_replacing_a_video_changes_its_shard(tmp_path):
    ids = [f"clip{i:03d}" for i in range(10)]
    definition = make_dataset(tmp_path, ids, num_shards=4)
    results = tmp_path / "results"
    sync_dataset("demo", definition, results)
    video = Path(definition["root"]) / "videos" / "clip003.mp4"
    video.write_bytes(b"a different, longer video")
    os.utime(video, ns=(1, 2_000_000_000))
    report = sync_report("demo", definition, results)
    assert report.changed == [f"{shard_of('clip003', 4):03d}"]


def test_fewer_shards_removes_stale_shard_files(tmp_path):
    definition = make_dataset(tmp_path, ["a", "b", "c"], num_shards=6)
    results = tmp_path / "results"
    sync_dataset("demo", definition, results)
    report = sync_report("demo", dict(definition, num_shards=3), results)
    assert report.removed == ["003", "004", "005"]
    assert sorted(p.name for p in (results / "demo/manifest").glob("shard-*")) == [
        "shard-000.parquet", "shard-001.parquet", "shard-002.parquet"]


def test_skipped_clips_go_to_failures_table(tmp_path):
    definition = make_dataset(tmp_path, ["a", "b"], num_shards=2)
    (Path(definition["root"]) / "videos" / "b.mp4").unlink()
    results = tmp_path / "results"
    sync_dataset("demo", dict(definition, on_missing="skip"), results)
    failures = pq.read_table(results / "demo/manifest/failures.parquet").to_pylist()
    assert [(f["clip_id"], f["stage"], f["error_type"]) for f in failures] == [
        ("b", "manifest", "missing_file")]
    _, meta = read_manifest(results / "demo/manifest/manifest.parquet")
    assert meta["skipped"][0]["clip_id"] == "b"


def test_cli_prints_summary(tmp_path, capsys):
    definition = make_dataset(tmp_path, [f"c{i}" for i in range(7)], num_shards=3)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "datasets": ["toy"],
                                      "dataset_defs": {"toy": definition}}))
    assert cli_main(["manifest", "--config", str(config), "--dataset", "toy"]) == 0
    out = capsys.readouterr().out
    assert "dataset toy (layout demo): 7 clips, 5 fold(s), 3 shard(s)" in out
    assert "clips per label: happiness 2, sadness 2, neutral 1, anger 1, surprise 1" in out
    assert "clips per test_fold: 0 0, 1 2, 2 2, 3 1, 4 1, 5 1" in out
    assert "changed shard manifests: 000, 001, 002" in out
    assert cli_main(["manifest", "--config", str(config), "--dataset", "toy"]) == 0
    assert "changed shard manifests: none (whole manifest unchanged)" in capsys.readouterr().out
    assert cli_main(["manifest", "--config", str(config), "--dataset", "nope"]) == 2


def test_cli_reports_problems(tmp_path, capsys):
    definition = make_dataset(tmp_path, ["a"], num_shards=1)
    Path(definition["split_files"][0]).write_text("clip_id,path,label,fold\na,videos/a.mp4,meh,1\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"results": str(tmp_path / "r"), "dataset_defs": {"t": definition}}))
    assert cli_main(["manifest", "--config", str(config), "--dataset", "t"]) == 1
    err = capsys.readouterr().err
    assert f"{definition['split_files'][0]}:2: unknown expression label 'meh'" in err


@pytest.mark.slow
def test_sync_is_fast_at_dataset_scale(tmp_path):
    """40k clips (DFEW-style names found under part folders) sync in a few seconds."""
    root = tmp_path / "original"
    split = tmp_path / "split"
    n = 40_000
    for part in range(1, 26):
        (root / f"part_{part}").mkdir(parents=True)
    for i in range(1, n + 1):
        (root / f"part_{(i - 1) // 1600 + 1}" / f"{i:05d}.mp4").touch()
    for k in range(1, 6):
        for role in ("train", "test"):
            folder = split / f"{role}(single-labeled)"
            folder.mkdir(parents=True, exist_ok=True)
            ids = [i for i in range(1, n + 1) if ((i % 5) + 1 == k) == (role == "test")]
            (folder / f"set_{k}.csv").write_text(
                "video_name,label\n" + "".join(f"{i},{i % 7 + 1}\n" for i in ids))
    definition = {"layout": "dfew", "root": str(root), "split_files": [str(split)], "num_shards": 64}
    start = time.perf_counter()
    report = sync_report("dfew", definition, tmp_path / "results")
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = sync_report("dfew", definition, tmp_path / "results")
    second = time.perf_counter() - start
    print(f"40k clips: first sync {first:.2f}s, unchanged re-sync {second:.2f}s")
    assert report.build.table.num_rows == n and again.changed == []
    assert second < 10


# --- `dfer manifest --config A --config B`: merged exactly as `snakemake --configfile A B` ---

#: The base config and two overlays, with the cases where merging in the wrong order or the
#: wrong way shows: a list replaced (not appended), a mapping merged key by key, a scalar
#: replaced by a mapping and a mapping by a scalar, and overlay A's scalar that overlay B turns
#: into a mapping (Snakemake merges the overlays first, then applies them over the base: the
#: base's mapping survives under B's keys).
MERGE_BASE = {"results": "r0", "datasets": ["base"], "keep": {"a": 1, "b": [1, 2]},
              "scalar": 1, "mapping": {"x": 1}, "flip": {"w": 0}}
MERGE_A = {"datasets": ["a"], "keep": {"b": [3]}, "scalar": {"now": "map"}, "flip": 3}
MERGE_B = {"keep": {"c": 4}, "mapping": 7, "flip": {"z": 1}}


def _snakemake_config(project: Path, overlays: list[Path]) -> dict:
    """The config a Snakefile with ``configfile: "config/config.yaml"`` sees under
    ``snakemake --configfile A B``: Snakemake's own merge, written out by the Snakefile."""
    import json
    import subprocess
    import sys

    (project / "Snakefile").write_text(
        'import json\nconfigfile: "config/config.yaml"\n'
        'open("seen.json", "w").write(json.dumps(config, sort_keys=True))\n'
        "rule all:\n    input: []\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", "Snakefile", "--cores", "1",
                           "-n", "--configfile", *map(str, overlays)],
                          cwd=project, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((project / "seen.json").read_text())


def test_cli_overlays_merge_exactly_as_snakemake_configfile(tmp_path, monkeypatch, capsys):
    from dfer.stages.manifest import merge_configs

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(MERGE_BASE))
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump(MERGE_A))
    b.write_text(yaml.safe_dump(MERGE_B))
    monkeypatch.chdir(tmp_path)
    expected = {"results": "r0", "datasets": ["a"], "keep": {"a": 1, "b": [3], "c": 4},
                "scalar": {"now": "map"}, "mapping": 7, "flip": {"w": 0, "z": 1}}
    assert merge_configs([a, b]) == expected
    assert _snakemake_config(tmp_path, [a, b]) == expected  # what Snakemake itself does


def test_cli_two_overlays_without_results_use_the_base_config(tmp_path, monkeypatch, capsys):
    """Two overlays, neither with `results`: merged over config/config.yaml like one overlay
    (this crashed with KeyError: 'results'), and the schema's defaults filled in as the
    Snakefile does."""
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # config/config.yaml is the base, as for `snakemake --configfile`
    definition = make_dataset(tmp_path, [f"c{i}" for i in range(3)], num_shards=2)
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump({"dataset_defs": {"toy": dict(definition, num_shards=9)}}))
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump({"dataset_defs": {"toy": {"num_shards": 2}}}))
    code = cli_main(["manifest", "--check", "--config", str(first), "--config", str(second),
                     "--dataset", "toy", "--results", str(tmp_path / "results")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "dataset toy (layout demo): 3 clips, 3 fold(s), 2 shard(s)" in out.out
    assert not (tmp_path / "results").exists()
    # an overlay that is not a config: one line naming it, no traceback
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    assert cli_main(["manifest", "--config", str(bad), "--dataset", "toy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dfer manifest: {bad}: Config file must be given as JSON or YAML")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert cli_main(["manifest", "--config", str(tmp_path / "nope.yaml"), "--dataset", "toy"]) == 2
    assert capsys.readouterr().err == f"dfer manifest: {tmp_path / 'nope.yaml'}: config file not found\n"
