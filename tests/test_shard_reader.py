"""Flat training memory (issue 6): the clip table holds metadata only, landmark points and
captions are read per clip from a temporary side store, and at most ``max_open_shards``
safetensors shards of each kind stay open."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.dataset import simple_renderers, write_synthetic_dataset
from torch.utils.data import DataLoader

from dfer.core.artifacts import provenance, write_parquet
from dfer.train.data import ClipDataset, DataConfig, Needs, collate, load_clip_table
from dfer.train.shard_reader import LRU, ShardReader, SideStore, load_landmark_points

ALL = Needs(parsing=True, landmarks=True, captions=True)
SHARDS = 4


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    write_synthetic_dataset(root, "syn", num_classes=3, clips_per_class=4, frames=5, size=24,
                            num_shards=SHARDS)
    return root


def blank(data: np.ndarray, size: int) -> np.ndarray:
    """A picklable renderer (module level), unlike the closures of ``simple_renderers``."""
    return np.full((size, size, 3), int(np.asarray(data).sum()) % 251, dtype=np.uint8)


def items(ds: ClipDataset) -> list[dict]:
    return [ds[i] for i in range(len(ds))]


def assert_same_items(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key, value in x.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, y[key]), key
            else:
                assert value == y[key], key


def test_lru_evicts_the_least_recently_used() -> None:
    cache: LRU[int] = LRU(2)
    loads: list[str] = []

    def load(key: str) -> int:
        loads.append(key)
        return len(loads)

    assert cache.get("a", lambda: load("a")) == 1
    assert cache.get("b", lambda: load("b")) == 2
    assert cache.get("a", lambda: load("a")) == 1  # hit: no load, "a" becomes most recent
    cache.get("c", lambda: load("c"))  # evicts "b"
    assert cache.keys() == ["a", "c"] and loads == ["a", "b", "c"]
    assert cache.get("b", lambda: load("b")) == 4  # reloaded after eviction
    with pytest.raises(ValueError, match="cache size must be >= 1"):
        LRU(0)


def test_clip_table_holds_metadata_only(results: Path) -> None:
    table = load_clip_table(results, "syn", ALL)
    assert set(table.clips.columns) == {"clip_id", "label", "label_idx", "test_fold", "shard",
                                        "lm_start", "lm_stop", "cap_offset", "cap_length", "one_frame"}
    assert not hasattr(table, "landmarks") and not hasattr(table, "captions")
    assert (table.clips["lm_stop"] - table.clips["lm_start"] == 5).all()  # 5 frames per clip
    assert table.clips["shard"].nunique() == SHARDS


def test_landmark_rows_follow_clip_and_frame_order(tmp_path: Path) -> None:
    """Rows stored out of order still give each clip its own points, frame by frame."""
    rng = np.random.default_rng(0)
    ids = np.repeat(["b", "a", "c"], 3)
    frames = np.tile([2, 0, 1], 3)
    points = rng.uniform(0, 10, (9, 136)).astype(np.float32)
    shuffle = rng.permutation(9)
    path = tmp_path / "landmarks.parquet"
    write_parquet(path, pd.DataFrame({"clip_id": ids[shuffle], "frame": frames[shuffle],
                                      "points": list(points[shuffle])}), provenance("landmarks", 1))
    sorted_points = load_landmark_points(path)
    assert sorted_points.shape == (9, 68, 2) and sorted_points.dtype == np.float32
    store = SideStore()
    store.add_landmarks(path)  # a first shard: the second one's rows start after it
    ranges = store.add_landmarks(path).set_index("clip_id")
    assert store.num_points == 18 and list(ranges.index) == ["a", "b", "c"]
    for cid in ("a", "b", "c"):
        start, stop = ranges.loc[cid, "lm_start"], ranges.loc[cid, "lm_stop"]
        assert 9 <= start < stop <= 18
        mine = np.flatnonzero(ids == cid)
        expected = points[mine[np.argsort(frames[mine])]].reshape(3, 68, 2)
        np.testing.assert_array_equal(sorted_points[start - 9:stop - 9], expected)
        np.testing.assert_array_equal(store.points(start, stop), expected)
    with pytest.raises(IndexError, match="landmark rows 17:19 outside"):
        store.points(17, 19)


def test_bad_landmark_row_length_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "landmarks.parquet"
    write_parquet(path, pd.DataFrame({"clip_id": ["a"], "frame": [0], "points": [np.zeros(10, np.float32)]}),
                  provenance("landmarks", 1))
    with pytest.raises(ValueError, match="10 landmark values for 1 rows, expected 136 per row"):
        load_landmark_points(path)


def test_captions_round_trip_and_a_repeated_clip_keeps_its_last(tmp_path: Path) -> None:
    path = tmp_path / "captions.parquet"
    write_parquet(path, pd.DataFrame({"clip_id": ["x", "y", "x"], "caption": ["old", "wéird ✓", "new"]}),
                  provenance("captions", 1))
    store = SideStore()
    first = store.add_captions(path).set_index("clip_id")
    second = store.add_captions(path).set_index("clip_id")
    for rows in (first, second):
        got = {c: store.caption(int(r.cap_offset), int(r.cap_length)) for c, r in rows.iterrows()}
        assert got == {"x": "new", "y": "wéird ✓"}
    assert second["cap_offset"].min() == store.caption_bytes // 2


def test_side_store_folder_lives_with_its_owner(tmp_path: Path) -> None:
    store = SideStore()
    folder = store.folder
    assert folder.is_dir()
    clone = pickle.loads(pickle.dumps(store))  # a spawned worker's copy: reads, never deletes
    assert clone.folder == folder
    del clone
    assert folder.is_dir()
    del store
    import gc

    gc.collect()
    assert not folder.exists()


def test_open_shards_are_bounded_and_items_unchanged(results: Path) -> None:
    table = load_clip_table(results, "syn", ALL)
    wide = ClipDataset("syn", table.clips, table, ALL, DataConfig(num_frames=3, max_open_shards=8),
                       32, train=False, renderers=simple_renderers())
    reference = items(wide)
    assert len(wide.reader.handles) == 2 * SHARDS  # frames + parsing of every shard
    narrow = ClipDataset("syn", table.clips, table, ALL, DataConfig(num_frames=3, max_open_shards=2),
                         32, train=False, renderers=simple_renderers())
    seen_handles = set()
    order = np.random.default_rng(1).permutation(len(narrow))  # shuffled: shards come and go
    got = [None] * len(narrow)
    for i in order:
        got[i] = narrow[int(i)]
        r = narrow.reader
        assert len(r.handles) <= 2
        seen_handles.update(r.handles.keys())
    assert_same_items(reference, got)
    assert len(seen_handles) == 2 * SHARDS


def test_reader_caches_are_not_pickled_or_shared_across_processes(results: Path) -> None:
    table = load_clip_table(results, "syn", Needs(landmarks=True))
    ds = ClipDataset("syn", table.clips, table, Needs(landmarks=True), DataConfig(num_frames=2),
                     32, train=False, renderers=(blank, blank))
    ds[0]
    assert len(ds.reader.handles) == 1
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone.reader.handles) == 0
    assert clone.reader.max_open == ds.reader.max_open
    assert_same_items([ds[0]], [clone[0]])
    # a forked child (another pid) drops what its parent had open before reading
    reader: ShardReader = ds.reader
    before = reader.handles
    reader._pid = -1  # as if this were a forked child: the recorded pid is not ours
    reader.tensor("frames", table.clips.loc[0, "shard"], table.clips.loc[0, "clip_id"])
    assert reader.handles is not before and len(reader.handles) == 1


def test_dataloader_workers_read_the_same_batches(results: Path) -> None:
    table = load_clip_table(results, "syn", ALL)
    cfg = DataConfig(num_frames=2, mid_frames=1, max_open_shards=1)
    ds = ClipDataset("syn", table.clips, table, ALL, cfg, 24, train=False, renderers=simple_renderers())

    def batches(workers: int) -> list[dict]:
        loader = DataLoader(ds, batch_size=4, shuffle=False, num_workers=workers, collate_fn=collate)
        return list(loader)

    single, multi = batches(0), batches(2)
    assert len(single) == len(multi) == 3
    for a, b in zip(single, multi, strict=True):
        assert a["clip_id"] == b["clip_id"] and a["captions"] == b["captions"]
        for key in ("frames", "landmarks", "parsing", "label"):
            assert torch.equal(a[key], b[key]), key


def test_max_open_shards_must_be_positive() -> None:
    assert DataConfig.from_dict({"max_open_shards": 6}).max_open_shards == 6
    assert DataConfig.from_dict({}).max_open_shards == 4
    with pytest.raises(ValueError, match="max_open_shards must be >= 1, got 0"):
        DataConfig.from_dict({"max_open_shards": 0})
