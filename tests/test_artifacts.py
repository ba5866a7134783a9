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


def test_inspect_of_a_truncated_or_garbled_file_is_one_line(tmp_path, capsys):
    """`dfer inspect` on a cut-short artifact printed a traceback (SafetensorError:
    incomplete metadata); each bad file is one line naming it, the others are still shown."""
    from dfer.cli import main

    meta = artifacts.provenance("decode", 1)
    frames = tmp_path / "frames"
    st = artifacts.write_safetensors(frames / "shard-000.safetensors",
                                     {"a": np.zeros((4, 8, 8, 3), np.uint8)}, meta)
    pq_path = artifacts.write_parquet(frames / "shard-000.parquet",
                                      pd.DataFrame({"clip_id": ["a"]}), meta)
    good = artifacts.write_parquet(tmp_path / "good.parquet", pd.DataFrame({"x": [1]}), meta)
    for path in (st, pq_path):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    garbled = tmp_path / "g.safetensors"
    garbled.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}")
    assert main(["inspect", str(st), str(pq_path), str(garbled), str(good)]) == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    lines = cap.err.strip().splitlines()
    rebuild = f"rebuild it with `snakemake --cores all --forcerun {frames / 'shard-000.parquet'}`"
    assert lines[0].startswith(f"{st}: cannot inspect: truncated: its tensors need ")
    assert lines[0].endswith(rebuild)
    assert lines[1].startswith(f"{pq_path}: cannot inspect: truncated: no Parquet footer at its end")
    assert lines[1].endswith(rebuild)
    assert lines[2] == (f"{garbled}: cannot inspect: damaged: its header is not a safetensors "
                        "header; re-run the stage that wrote it")
    assert len(lines) == 3
    assert f"== {good}" in cap.out  # the whole file after them is still shown


@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    (lambda p: p.write_bytes(b"PAR1" + b"\0" * 20), "truncated: no Parquet footer at its end (24 bytes)"),
    (lambda p: p.write_bytes(b"PAR1" + b"\0" * 4 + (999).to_bytes(4, "little") + b"PAR1"),
     "damaged: its footer claims 999 bytes of a 16-byte file"),
    (lambda p: p.write_bytes(b"NOPE" * 4), "not a Parquet file (no PAR1 at its start)"),
])
def test_integrity_problem_of_parquet_files(tmp_path, make, expected):
    from dfer.core.integrity import problem

    path = tmp_path / "x.parquet"
    make(path)
    assert problem(path) == expected
    assert problem(tmp_path / "gone.parquet") == "missing"


def test_integrity_problem_of_safetensors_files(tmp_path):
    from dfer.core.integrity import problem

    path = artifacts.write_safetensors(tmp_path / "x.safetensors",
                                       {"a": np.zeros((2, 3), np.uint8),
                                        "b": np.ones(5, np.float32)}, {})
    assert problem(path) is None
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    # the tensors need 6 + 20 bytes after the header: one byte short is truncated
    path.write_bytes(data[:-1])
    assert problem(path) == f"truncated: its tensors need {8 + header + 26} bytes, the file has {8 + header + 25}"
    path.write_bytes(data + b"\0")
    assert problem(path) == "damaged: 1 bytes after its last tensor"
    path.write_bytes(data[:8 + header - 1])
    assert problem(path) == f"truncated: its header needs {8 + header} bytes, the file has {7 + header}"
    empty = artifacts.write_safetensors(tmp_path / "e.safetensors", {}, {"k": "v"})
    assert problem(empty) is None  # an all-failed shard is whole
