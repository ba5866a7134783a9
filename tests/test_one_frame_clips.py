"""One-frame clips (issue 22): flagged where they are decoded and in training, droppable by key.

A clip whose source has a single frame is decoded as that frame repeated ``T`` times and then
trained on as if it were a video. The decode stage counts such clips in its log line, the
clip table flags them (``one_frame``), every evaluation counts them among its scored clips,
and ``data.one_frame_clips: drop`` loses them at decode, counted there like any lost clip.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file
from support.dataset import write_synthetic_dataset
from support.videos import write_frame_folder

from dfer.core.artifacts import read_meta, read_parquet, write_parquet
from dfer.core.paths import shard_file
from dfer.train.data import Needs, load_clip_table
from dfer.video import decode_shard


def test_decode_counts_and_logs_one_frame_clips(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(0)
    one = write_frame_folder(tmp_path / "one", rng.integers(0, 255, (1, 64, 64, 3), np.uint8))
    three = write_frame_folder(tmp_path / "three", rng.integers(0, 255, (3, 64, 64, 3), np.uint8))
    manifest = tmp_path / "shard-000.parquet"
    pq.write_table(pa.table({
        "clip_id": ["one", "three"], "path": [str(one), str(three)],
        "source_kind": ["frames", "frames"], "label": ["anger"] * 2,
        "label_idx": pa.array([3, 3], pa.int32()), "test_fold": pa.array([1, 1], pa.int32()),
        "shard": pa.array([0, 0], pa.int32())}), manifest)
    out = [tmp_path / "frames" / f"shard-000{s}" for s in (".safetensors", ".parquet", ".failures.parquet")]
    with caplog.at_level(logging.WARNING):
        result = decode_shard(manifest, *out, {"num_frames": 4, "size": 32, "detect_frames": 0},
                              progress=False)
    assert (result.decoded, result.one_frame) == (2, 1)
    assert result.summary() == "2 clip(s) decoded, 0 failed, 2 with no face found (centre crop), " \
                               "1 from a single source frame (repeated)"
    assert "1 clip(s) have a single source frame, repeated as the whole clip: one" in caplog.text
    frames = load_file(str(out[0]))["one"]
    assert frames.shape == (4, 32, 32, 3) and all(np.array_equal(f, frames[0]) for f in frames)


def test_clip_table_flags_one_frame_clips_and_drop_loses_them_at_decode(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, "one", num_classes=2, clips_per_class=2, frames=4, num_shards=1)
    index_path = shard_file(tmp_path, "one", "frames", "000", ".parquet")
    index = read_parquet(index_path)
    index.loc[index["clip_id"] == "one_00_000", "num_source_frames"] = 1
    write_parquet(index_path, index, read_meta(index_path))

    kept = load_clip_table(tmp_path, "one", Needs())
    assert kept.clips.set_index("clip_id")["one_frame"].to_dict() == {
        "one_00_000": True, "one_00_001": False, "one_01_000": False, "one_01_001": False}
    account = kept.account(1, "test")  # one_00_000 and one_01_000 are fold 1's test clips
    assert (account.listed, account.evaluated, account.one_frame) == (2, 2, 1)
    assert account.text() == "evaluated 2 of 2 test clips; 1 one-frame clip(s) among them"

    dropped = load_clip_table(tmp_path, "one", Needs(), one_frame_clips="drop")
    assert "one_00_000" not in set(dropped.clips["clip_id"])
    assert dropped.lost.to_dict("records") == [{"clip_id": "one_00_000", "label": "class0",
                                                "test_fold": 1, "stage": "decode",
                                                "error_type": "one_frame"}]
    assert dropped.account(1, "test").text() == ("evaluated 1 of 2 test clips (not scored: "
                                                 "decode one_frame: 1)")
