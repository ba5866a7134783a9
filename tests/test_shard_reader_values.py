"""The LRU cache, the side store's rows and bytes, and the shard reader, by hand (issue 25).

Fast and direct: two small landmark / caption shards whose rows, offsets and byte lengths are
worked out here (rows appended shard after shard, captions as UTF-8 bytes, a clip listed twice
keeps its last caption), the cache's eviction order step by step, and which handles a reader
keeps, drops when pickled and reopens in another process.
"""

from __future__ import annotations

import gc
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import save_file

from dfer.train.inputs import DataInputs
from dfer.train.shard_reader import LRU, ShardReader, SideStore, load_landmark_points


def test_lru_loads_on_a_miss_and_evicts_the_least_recently_used() -> None:
    with pytest.raises(ValueError, match=r"^cache size must be >= 1, got 0$"):
        LRU(0)
    loads: list[str] = []
    cache: LRU[str] = LRU(2)

    def get(key: str) -> str:
        return cache.get(key, lambda: loads.append(key) or key.upper())

    assert [get("a"), get("b"), get("a")] == ["A", "B", "A"]
    assert loads == ["a", "b"] and cache.keys() == ["b", "a"] and len(cache) == 2
    assert get("c") == "C" and cache.keys() == ["a", "c"]  # b was the least recently used
    assert get("b") == "B" and loads == ["a", "b", "c", "b"] and cache.keys() == ["c", "b"]
    cache.clear()
    assert len(cache) == 0 and cache.keys() == []
    one: LRU[int] = LRU(1)
    one.get(1, lambda: 1)
    one.get(2, lambda: 2)
    assert one.keys() == [2]


def _landmarks(path: Path, rows: list[tuple[str, int, float]]) -> Path:
    """Rows (clip, frame, v): all 68 points of the row at (v, v + 0.5)."""
    pts = [np.tile([v, v + 0.5], 68).astype(np.float32).tolist() for _, _, v in rows]
    pq.write_table(pa.table({"clip_id": [c for c, _, _ in rows], "frame": [f for _, f, _ in rows],
                             "points": pts}), path)
    return path


def test_side_store_rows_shard_after_shard(tmp_path: Path) -> None:
    a = _landmarks(tmp_path / "a.parquet", [("y", 1, 4.0), ("x", 0, 1.0), ("y", 0, 3.0), ("x", 1, 2.0)])
    b = _landmarks(tmp_path / "b.parquet", [("z", 0, 5.0)])
    empty = _landmarks(tmp_path / "e.parquet", [])
    store = SideStore()
    first = store.add_landmarks(a)  # sorted by (clip, frame): x0 x1 y0 y1 -> rows 0..3
    assert first.to_dict("list") == {"clip_id": ["x", "y"], "lm_start": [0, 2], "lm_stop": [2, 4]}
    assert str(first["lm_start"].dtype) == "int64" and store.num_points == 4
    second = store.add_landmarks(b)
    assert second.to_dict("list") == {"clip_id": ["z"], "lm_start": [4], "lm_stop": [5]}
    none = store.add_landmarks(empty)
    assert none.empty and list(none.columns) == ["clip_id", "lm_start", "lm_stop"]
    assert str(none["lm_stop"].dtype) == "int64" and str(none["lm_start"].dtype) == "int64"
    assert store.num_points == 5
    got = store.points(1, 4)
    assert got.shape == (3, 68, 2) and got.dtype == np.float32
    assert got[:, 0].tolist() == [[2.0, 2.5], [3.0, 3.5], [4.0, 4.5]] and (got[:, 67] == got[:, 0]).all()
    assert store.points(4, 5)[0, 10].tolist() == [5.0, 5.5] and store.points(0, 1)[0, 0].tolist() == [1.0, 1.5]
    assert str(second["lm_start"].dtype) == "int64" and str(second["lm_stop"].dtype) == "int64"
    for start, stop in ((-1, 2), (2, 2), (3, 6)):
        with pytest.raises(IndexError, match=rf"landmark rows {start}:{stop} outside .*points.f32 \(5 rows\)"):
            store.points(start, stop)
    points, ids = load_landmark_points(a, with_ids=True)
    assert ids.tolist() == ["x", "x", "y", "y"] and points[:, 0, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert load_landmark_points(b).shape == (1, 68, 2)


def test_side_store_caption_bytes(tmp_path: Path) -> None:
    """"é" is 2 bytes in UTF-8: "né" 3, "abc" 3, then the second shard after 6 bytes."""
    one = tmp_path / "c1.parquet"
    pq.write_table(pa.table({"clip_id": ["p", "q", "p"], "caption": ["old", "abc", "né"]}), one)
    two = tmp_path / "c2.parquet"
    pq.write_table(pa.table({"clip_id": ["r"], "caption": ["xyz!"]}), two)
    store = SideStore()
    first = store.add_captions(one)
    assert first.to_dict("list") == {"clip_id": ["p", "q"], "cap_offset": [0, 3], "cap_length": [3, 3]}
    second = store.add_captions(two)
    assert second.to_dict("list") == {"clip_id": ["r"], "cap_offset": [6], "cap_length": [4]}
    assert store.caption_bytes == 10
    assert [str(first[c].dtype) for c in ("cap_offset", "cap_length")] == ["int64", "int64"]
    assert [store.caption(0, 3), store.caption(3, 3), store.caption(6, 4)] == ["né", "abc", "xyz!"]
    assert store.captions_path.read_bytes() == "néabcxyz!".encode()


def test_side_store_copies_read_and_only_the_owner_removes_the_folder(tmp_path: Path) -> None:
    store = SideStore()
    pq.write_table(pa.table({"clip_id": ["p"], "caption": ["hello"]}), tmp_path / "c.parquet")
    store.add_captions(tmp_path / "c.parquet")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.folder == store.folder and copy.caption_bytes == 5 and copy.num_points == 0
    assert copy.caption(0, 5) == "hello"
    folder = store.folder
    del copy
    gc.collect()
    assert folder.is_dir()  # a copy does not own the folder
    del store
    gc.collect()
    assert not folder.exists()  # the owner's folder goes with it
    given = SideStore(tmp_path / "mine")
    assert given.folder == tmp_path / "mine" and given.num_points == 0 and given.caption_bytes == 0


def test_shard_reader_keeps_at_most_max_open_handles(tmp_path: Path) -> None:
    files = {}
    for shard in ("000", "001"):
        path = tmp_path / f"shard-{shard}.safetensors"
        save_file({"c": np.full((2, 2), int(shard) + 1, np.uint8)}, str(path))
        files[shard] = {".safetensors": path}
    inputs = DataInputs("d", tmp_path / "m.parquet", ["000", "001"], {"frames": files})
    reader = ShardReader(inputs, max_open=1)
    assert reader.tensor("frames", "000", "c").tolist() == [[1, 1], [1, 1]]
    assert reader.tensor("frames", "001", "c").tolist() == [[2, 2], [2, 2]]
    assert reader.handles.keys() == [("frames", "001")] and reader.max_open == 1
    two = ShardReader(inputs, max_open="2")  # type: ignore[arg-type]
    two.tensor("frames", "000", "c")
    two.tensor("frames", "001", "c")
    assert two.handles.keys() == [("frames", "000"), ("frames", "001")]
    copy = pickle.loads(pickle.dumps(two))  # a spawned worker: no handles, same files
    assert len(copy.handles) == 0 and copy.max_open == 2 and copy.inputs == inputs
    assert copy.tensor("frames", "001", "c")[0, 0] == 2
    two._pid = -1  # as if forked: the parent's handles are not used
    assert two.tensor("frames", "000", "c")[0, 0] == 1 and two.handles.keys() == [("frames", "000")]
    with pytest.raises(KeyError, match="no parsing file shard-000.safetensors"):
        reader.tensor("parsing", "000", "c")
