"""Atomic artifact writes, provenance metadata and the inspect command."""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open

from dfer.core import artifacts
from dfer.core.sharding import shard_names, shard_of
from dfer.stages.inspect import inspect_artifact


def test_parquet_roundtrip_keeps_provenance(tmp_path):
    meta = artifacts.provenance("decode", 1, backend="pyav", params={"size": 224})
    path = artifacts.write_parquet(tmp_path / "a.parquet", pd.DataFrame({"x": [1, 2]}), meta)
    assert artifacts.read_parquet(path)["x"].tolist() == [1, 2]
    got = artifacts.read_meta(path)
    assert got["stage"] == "decode" and got["params"] == {"size": 224}
    assert got["schema_version"] == 1


def test_parquet_bytes_are_deterministic():
    frame = pd.DataFrame({"clip_id": ["a", "b"], "v": [0.5, 1.5]})
    meta = artifacts.provenance("manifest", 1)
    assert artifacts.parquet_bytes(frame, meta) == artifacts.parquet_bytes(frame.copy(), meta)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    dest = tmp_path / "shard.bin"
    artifacts.write_bytes_atomic(dest, b"complete")
    with pytest.raises(RuntimeError), artifacts.atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed midway")
    assert dest.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.bin"]


def test_write_bytes_if_changed_keeps_mtime(tmp_path):
    dest = tmp_path / "m.parquet"
    assert artifacts.write_bytes_if_changed(dest, b"abc")
    os.utime(dest, ns=(1_000_000_000, 1_000_000_000))
    assert not artifacts.write_bytes_if_changed(dest, b"abc")
    assert dest.stat().st_mtime_ns == 1_000_000_000
    assert artifacts.write_bytes_if_changed(dest, b"abcd")
    assert dest.read_bytes() == b"abcd"


def test_safetensors_roundtrip_and_empty_shard(tmp_path):
    frames = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    meta = artifacts.provenance("decode", 1)
    path = artifacts.write_safetensors(tmp_path / "s.safetensors", {"clip/1": frames}, meta)
    with safe_open(str(path), framework="numpy") as fh:
        np.testing.assert_array_equal(fh.get_tensor("clip/1"), frames)
    assert artifacts.read_meta(path)["stage"] == "decode"

    empty = artifacts.write_safetensors(tmp_path / "e.safetensors", {}, meta)
    with safe_open(str(empty), framework="numpy") as fh:
        assert list(fh.keys()) == []
    assert artifacts.read_meta(empty)["stage"] == "decode"


def test_failures_table_columns(tmp_path):
    rows = [{"clip_id": "c1", "stage": "decode", "source": "/v/c1.mp4",
             "error_type": "corrupt", "message": "c1: moov atom not found"}]
    path = artifacts.write_failures(tmp_path / "f.parquet", rows, artifacts.provenance("decode", 1))
    frame = artifacts.read_parquet(path)
    assert list(frame.columns) == list(artifacts.FAILURE_COLUMNS)
    assert frame.iloc[0]["message"] == "c1: moov atom not found"
    empty = artifacts.read_parquet(artifacts.write_failures(tmp_path / "g.parquet", [], {}))
    assert len(empty) == 0 and list(empty.columns) == list(artifacts.FAILURE_COLUMNS)


#: shard_of by its definition: blake2b(clip id as UTF-8, digest_size=8), big-endian integer,
#: modulo the shard count. Computed once with hashlib and pinned, so a change of hash, byte
#: order, encoding or reduction (which would reshuffle every dataset's shards) fails here:
#: clip id -> (digest hex, {num_shards: shard}).
PINNED_SHARDS = {
    "clip_0001": ("dda78233a2279b83", {1: 0, 8: 3, 64: 3, 1000: 91}),
    "a": ("40f89e395b66422f", {1: 0, 8: 7, 64: 47, 1000: 343}),
    "DFEW/00001": ("5f64c9c9dc672a43", {1: 0, 8: 3, 64: 3, 1000: 539}),
    "\u00fcn\u00ef": ("5861af09ba88cd97", {1: 0, 8: 7, 64: 23, 1000: 167}),
}


@pytest.mark.parametrize("clip_id", sorted(PINNED_SHARDS))
def test_shard_of_matches_its_definition(clip_id: str) -> None:
    digest, expected = PINNED_SHARDS[clip_id]
    assert hashlib.blake2b(clip_id.encode("utf-8"), digest_size=8).hexdigest() == digest
    assert {n: shard_of(clip_id, n) for n in expected} == expected


def test_sharding_is_spread():
    counts = np.bincount([shard_of(f"clip_{i}", 8) for i in range(4000)], minlength=8)
    assert counts.min() > 400  # roughly uniform: 500 expected per shard
    assert shard_names(3) == ["000", "001", "002"]
    with pytest.raises(ValueError, match="num_shards"):
        shard_of("x", 0)


def test_inspect_prints_schema_rows_and_provenance(tmp_path):
    meta = artifacts.provenance("landmarks", 2, backend="dlib")
    pq_path = artifacts.write_parquet(
        tmp_path / "l.parquet", pd.DataFrame({"clip_id": ["a", "b", "c"], "score": [0.1, 0.2, 0.3]}), meta
    )
    st_path = artifacts.write_safetensors(
        tmp_path / "f.safetensors", {"a": np.zeros((16, 8, 8, 3), np.uint8)}, meta
    )
    out = io.StringIO()
    inspect_artifact(pq_path, rows=2, out=out)
    inspect_artifact(st_path, rows=2, out=out)
    text = out.getvalue()
    assert "rows: 3" in text and "score: double" in text and '"backend": "dlib"' in text
    assert "a: uint8 [16, 8, 8, 3]" in text and "tensors: 1" in text
