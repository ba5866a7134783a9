"""Every artifact gets the mode a plain ``open()`` would give it: ``0o666 & ~umask``.

Artifacts are written to a ``mkstemp`` file (owner-only, 0600) and renamed into place, and
safetensors' ``save_file`` creates its own owner-only file; either way a results folder shared
by a group must stay readable by the group. The test sets a known umask (two of them, so a
value cached at import cannot pass), reads it back with an ``os.umask`` round trip, runs the
real writers of every artifact kind (Parquet tables and failures tables, manifest shards
written only when changed, safetensors frames / parsing shards and empty shards, checkpoints,
JSON, PNG, CSV / Markdown / HTML reports) and checks every file they left.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.dataset import simple_renderers, write_synthetic_dataset
from support.videos import pattern_frames, write_video

from dfer.core import artifacts
from dfer.manifests import sync_dataset
from dfer.methods.checkpoint import save_checkpoint
from dfer.methods.fineclipper import FineCLIPER, ModelConfig
from dfer.report.write import build_report
from dfer.train.evaluate import evaluate_checkpoint
from dfer.video import decode_shard


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture(params=[0o027, 0o002], ids=["umask027", "umask002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(folder: Path) -> dict[str, str]:
    """Relative path -> octal permission bits of every file under ``folder``."""
    return {str(p.relative_to(folder)): oct(stat.S_IMODE(p.stat().st_mode))
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _demo_dataset(root: Path) -> dict:
    lines = ["clip_id,path,label,fold"]
    for n, cid in enumerate(["c0", "c1", "c2"]):
        (root / "videos").mkdir(parents=True, exist_ok=True)
        (root / "videos" / f"{cid}.mp4").write_bytes(cid.encode())
        lines.append(f"{cid},videos/{cid}.mp4,{('happiness', 'sadness', 'neutral')[n]},{n + 1}")
    lines.append("gone,videos/gone.mp4,anger,1")  # missing media: a manifest failures row
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return {"layout": "demo", "root": str(root), "split_files": [str(root / "manifest.csv")],
            "num_shards": 2, "on_missing": "skip"}


def _decode_manifest(path: Path, video: Path) -> Path:
    pq.write_table(pa.table({
        "clip_id": ["v", "missing"], "path": [str(video), str(path.parent / "missing.mp4")],
        "source_kind": ["video", "video"], "label": ["anger", "anger"],
        "label_idx": pa.array([0, 0], pa.int32()), "test_fold": pa.array([1, 1], pa.int32()),
        "shard": pa.array([0, 0], pa.int32()),
    }), path)
    return path


def test_every_artifact_kind_gets_the_umask_mode(tmp_path: Path, umask: int) -> None:
    mask = _process_umask()  # what the process really has, not what the test meant to set
    assert mask == umask
    expected = oct(0o666 & ~mask)
    inputs, results = tmp_path / "inputs", tmp_path / "results"
    inputs.mkdir()
    meta = artifacts.provenance("test", 1)

    # the writers one by one
    loose = results / "loose"
    artifacts.write_parquet(loose / "table.parquet", pd.DataFrame({"x": [1, 2]}), meta)
    artifacts.write_failures(loose / "t.failures.parquet", [], meta)
    artifacts.write_safetensors(loose / "frames.safetensors", {"a": np.zeros((2, 4, 4, 3), np.uint8)}, meta)
    artifacts.write_safetensors(loose / "empty.safetensors", {}, meta)
    artifacts.write_bytes_atomic(loose / "summary.json", json.dumps({"a": 1}).encode())
    assert artifacts.write_bytes_if_changed(loose / "m.parquet", artifacts.parquet_bytes(
        pd.DataFrame({"x": [1]}), meta))

    # the stages: manifest sync (shards written only when changed, failures table) ...
    sync_dataset("demo", _demo_dataset(inputs / "demo"), results)
    # ... decode (frames safetensors, index, failures) ...
    video = write_video(inputs / "v.mp4", pattern_frames(8, 32, 32))
    frames = results / "decoded" / "frames"
    decode_shard(_decode_manifest(inputs / "shard-000.parquet", video),
                 frames / "shard-000.safetensors", frames / "shard-000.parquet",
                 frames / "shard-000.failures.parquet", {"num_frames": 4, "size": 16}, progress=False)
    # ... the other upstream artifacts (landmarks, parsing maps, captions) of a dataset ...
    write_synthetic_dataset(results, "syn", num_classes=2, clips_per_class=2, frames=2, size=16)
    # ... a checkpoint, its evaluation (predictions, metrics.json, confusion.png) and the report
    model = FineCLIPER(ModelConfig(backbone="tiny", pretrained=None, use_parsing=False,
                                   use_landmarks=False, use_captions=False), ["class0", "class1"])
    run = results / "syn" / "train" / "r" / "fold-1"
    ckpt = save_checkpoint(run / "checkpoint.safetensors", model, dataset="syn", run="r", fold=1)
    evaluate_checkpoint(ckpt, results, "syn", 1, run, device="cpu", renderers=simple_renderers())
    build_report(results, ["syn", "demo"], results / "report")

    modes = _modes(results)
    kinds = {Path(name).suffix for name in modes}
    assert kinds >= {".parquet", ".safetensors", ".json", ".png", ".csv", ".md", ".html"}
    for name in ("syn/frames/shard-000.safetensors", "syn/parsing/shard-000.safetensors",
                 "syn/train/r/fold-1/checkpoint.safetensors", "decoded/frames/shard-000.safetensors",
                 "demo/manifest/shard-000.parquet", "demo/manifest/failures.parquet",
                 "syn/train/r/fold-1/metrics.json", "syn/train/r/fold-1/confusion.png",
                 "report/report.html"):
        assert name in modes, name
    wrong = {name: mode for name, mode in modes.items() if mode != expected}
    assert not wrong, f"expected {expected} (umask {oct(mask)}) for every artifact: {wrong}"
