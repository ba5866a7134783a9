"""The clip table, its accounting and a training item, checked against a dataset written with
known losses (issue 25).

One shard of 8 synthetic clips (2 classes x 4; folds 1, 2, 1, 2) plus one clip the manifest
skipped. Each stage loses one clip with a failure row, and parsing loses one more without a row
(absent); with every level needed, the expected table, lost rows and ``evaluated N of M`` counts
are listed here by hand. Items are compared with the stored arrays read back with safetensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from support.dataset import write_synthetic_dataset

from dfer.core.artifacts import read_meta, read_parquet, write_parquet, write_safetensors
from dfer.core.frame_sampling import jittered_indices
from dfer.core.paths import manifest_file, shard_file
from dfer.train.config import DataConfig
from dfer.train.data import (
    LOST_COLUMNS,
    ClipDataset,
    ClipTable,
    SplitAccount,
    _resize,
    collate,
    dataset_labels,
    dataset_shards,
    default_renderers,
    fold_split,
    listed_clips,
    load_clip_table,
    manifest_labels,
    prepare_clip,
    preprocessing_params,
    read_clip_table,
)
from dfer.train.inputs import DataInputs, Needs

ALL = Needs(parsing=True, landmarks=True, captions=True)
FAILED = {"frames": ["syn_00_002"], "landmarks": ["syn_01_000"], "parsing": ["syn_01_001"],
          "captions": ["syn_00_001"]}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    res = tmp_path_factory.mktemp("results")
    write_synthetic_dataset(res, "syn", num_classes=2, clips_per_class=4, frames=4, size=8, num_shards=1,
                            failed=FAILED)
    # syn_01_002 is absent from the parsing tensors without a failure row
    path = shard_file(res, "syn", "parsing", "000", ".safetensors")
    maps = load_file(str(path))
    del maps["syn_01_002"]
    write_safetensors(path, maps, read_meta(path))
    # a clip the manifest skipped for missing media, and the decode settings
    man = manifest_file(res, "syn")
    write_parquet(man, read_parquet(man), {**read_meta(man), "skipped": [
        {"clip_id": "syn_zz", "label": "class1", "test_fold": 2}, {"clip_id": "nolabel", "label": None}]})
    index = shard_file(res, "syn", "frames", "000", ".parquet")
    write_parquet(index, read_parquet(index), {**read_meta(index), "params": {"size": 8}})
    return res


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataset ``two``: 4 clips in 2 shards, each stage's output missing one clip without a
    failure row (decode: its frames; landmarks: its rows; captions: its caption), and frames
    index tables without a num_source_frames column (an older decode)."""
    res = tmp_path_factory.mktemp("two")
    ids = write_synthetic_dataset(res, "two", num_classes=2, clips_per_class=2, frames=4, size=8, num_shards=2)
    manifest = read_parquet(manifest_file(res, "two"))
    shard_of = dict(zip(manifest["clip_id"], manifest["shard"], strict=True))
    gone = {"frames": ids[0], "landmarks": ids[1], "captions": ids[2]}
    frames = shard_file(res, "two", "frames", shard_of[ids[0]], ".safetensors")
    tensors = load_file(str(frames))
    del tensors[ids[0]]
    write_safetensors(frames, tensors, read_meta(frames))
    man = manifest_file(res, "two")
    rows = read_parquet(man).astype({"test_fold": "int32"})  # as the manifest readers write it
    # two clips the manifest skipped (missing media), one in each shard (shard_of("s1", 2) == 0,
    # shard_of("s6", 2) == 1), the second with no fold recorded
    skipped = [{"clip_id": "s1", "label": "class0", "test_fold": 2}, {"clip_id": "s6", "label": "class1"}]
    write_parquet(man, rows, {**read_meta(man), "num_shards": 2, "skipped": skipped, "label_order": "by hand"})
    for stage in ("landmarks", "captions"):
        path = shard_file(res, "two", stage, shard_of[gone[stage]], ".parquet")
        table = read_parquet(path)
        write_parquet(path, table[table["clip_id"] != gone[stage]], read_meta(path))
    for shard in sorted(set(shard_of.values())):  # int32 label and fold, as decode writes them
        index = shard_file(res, "two", "frames", shard, ".parquet")
        write_parquet(index, read_parquet(index).drop(columns=["num_source_frames"]).astype(
            {"label_idx": "int32", "test_fold": "int32"}), read_meta(index))
    return res


def test_clips_absent_from_a_stage_are_lost_there(two: Path, caplog) -> None:  # noqa: ANN001
    ids = sorted(read_parquet(manifest_file(two, "two"))["clip_id"])
    with caplog.at_level("WARNING", logger="dfer.train.data"):
        table = load_clip_table(two, "two", Needs(landmarks=True, captions=True))
    assert [r.getMessage() for r in caplog.records if r.name == "dfer.train.data"] == [
        "two: 1 of 6 listed clip(s) usable; 5 lost, each at the first stage that lost it (captions absent: 1, "
        "decode absent: 1, landmarks absent: 1, manifest missing_file: 2)"]
    assert str(table.clips["label_idx"].dtype) == "int64" and table.label_order == "by hand"
    assert table.clips["clip_id"].tolist() == [ids[3]] and table.clips["one_frame"].tolist() == [False]
    assert table.lost.sort_values("clip_id")[["clip_id", "stage", "error_type"]].values.tolist() == [
        ["s1", "manifest", "missing_file"], ["s6", "manifest", "missing_file"],
        [ids[0], "decode", "absent"], [ids[1], "landmarks", "absent"], [ids[2], "captions", "absent"]]
    # one shard only: its clips, and only its clips listed
    shard_of = dict(read_parquet(manifest_file(two, "two"))[["clip_id", "shard"]].values.tolist())
    first, second = sorted(set(shard_of.values()))
    part = load_clip_table(two, "two", Needs(), shards=[first])
    assert set(part.listed["clip_id"]) == {c for c, s in shard_of.items() if s == first} | {"s1"}
    assert set(part.clips["clip_id"]) <= set(part.listed["clip_id"])
    other = load_clip_table(two, "two", Needs(), shards=[second])
    assert set(other.listed["clip_id"]) == {c for c, s in shard_of.items() if s == second} | {"s6"}
    # a manifest that does not record its shard count: every clip counts, whichever shards are read
    man = manifest_file(two, "two")
    meta = read_meta(man)
    write_parquet(man, read_parquet(man), {k: v for k, v in meta.items() if k != "num_shards"})
    try:
        assert len(load_clip_table(two, "two", Needs(), shards=[first]).listed) == 6
    finally:
        write_parquet(man, read_parquet(man), meta)
    listed = table.listed
    assert listed.columns.tolist() == ["clip_id", "label", "test_fold"] and str(listed["test_fold"].dtype) == "int64"
    assert listed["clip_id"].tolist() == sorted(listed["clip_id"]) and listed.index.tolist() == list(range(6))
    assert listed.set_index("clip_id").loc[["s1", "s6"], "test_fold"].tolist() == [2, 0]
    assert str(table.lost["test_fold"].dtype) == "int64" and str(table.clips["test_fold"].dtype) == "int64"


def test_captions_are_read_only_when_wanted_and_declared(results: Path, caplog) -> None:  # noqa: ANN001
    declared = DataInputs.from_results(results, "syn", ALL)  # captions among the files
    table = read_clip_table(declared, Needs(landmarks=True))
    assert not table.has_captions and "cap_offset" not in table.clips
    no_captions = DataInputs.from_results(results, "syn", Needs(landmarks=True))
    with caplog.at_level("WARNING", logger="dfer.train.data"):
        table = read_clip_table(no_captions, Needs(landmarks=True, captions=True))
    assert not table.has_captions
    assert "syn: no captions among the inputs; training without the caption level" in [
        r.getMessage() for r in caplog.records]
    caplog.clear()
    with caplog.at_level("WARNING", logger="dfer.train.data"):
        read_clip_table(declared, ALL)
    assert not any("no captions" in r.getMessage() for r in caplog.records)


def test_table_keeps_complete_clips_and_loses_each_other_clip_once(results: Path) -> None:
    table = load_clip_table(results, "syn", ALL)
    clips = table.clips
    assert clips["clip_id"].tolist() == ["syn_00_000", "syn_00_003", "syn_01_003"]  # sorted
    assert clips["label"].tolist() == ["class0", "class0", "class1"]
    assert clips["label_idx"].tolist() == [0, 0, 1] and clips["test_fold"].tolist() == [1, 2, 2]
    assert clips["shard"].tolist() == ["000"] * 3 and not clips["one_frame"].any()
    # videos, no still image: not a static dataset
    assert str(clips["static"].dtype) == "bool" and not clips["static"].any() and table.static is False
    assert str(clips["label_idx"].dtype) == "int64" and str(clips["test_fold"].dtype) == "int64"
    assert ((clips["lm_stop"] - clips["lm_start"]) == 4).all() and (clips["cap_length"] > 0).all()
    assert (table.labels, table.num_folds, table.has_captions) == (["class0", "class1"], 2, True)
    assert list(clips.columns) == ["clip_id", "label", "label_idx", "test_fold", "shard", "one_frame", "static",
                                   "lm_start", "lm_stop", "cap_offset", "cap_length"]
    assert table.label_order == "synthetic: the configured order (class0, class1)"  # no label_order: the layout's
    assert set(table.backends) == {"decode", "landmarks", "parsing", "captions"}
    assert set(load_clip_table(results, "syn", Needs(landmarks=True)).backends) == {"decode", "landmarks"}
    assert set(load_clip_table(results, "syn", Needs(parsing=True)).backends) == {"decode", "landmarks", "parsing"}
    assert set(load_clip_table(results, "syn", Needs(captions=True)).backends) == {"decode", "captions"}
    lost = table.lost.sort_values("clip_id").to_dict("records")
    assert list(table.lost.columns) == LOST_COLUMNS
    assert lost == [
        {"clip_id": "syn_00_001", "label": "class0", "test_fold": 2, "stage": "captions", "error_type": "unexpected"},
        {"clip_id": "syn_00_002", "label": "class0", "test_fold": 1, "stage": "decode", "error_type": "unexpected"},
        {"clip_id": "syn_01_000", "label": "class1", "test_fold": 1, "stage": "landmarks", "error_type": "unexpected"},
        {"clip_id": "syn_01_001", "label": "class1", "test_fold": 2, "stage": "parsing", "error_type": "unexpected"},
        {"clip_id": "syn_01_002", "label": "class1", "test_fold": 1, "stage": "parsing", "error_type": "absent"},
        {"clip_id": "syn_zz", "label": "class1", "test_fold": 2, "stage": "manifest", "error_type": "missing_file"},
    ]
    assert table.skipped == {"parsing": 2, "captions": 1, "decode": 1, "landmarks": 1, "manifest": 1}
    assert table.listed["clip_id"].tolist() == [f"syn_0{c}_00{j}" for c in (0, 1) for j in range(4)] + ["syn_zz"]
    # the side store holds each kept clip's points and caption
    row = clips.iloc[2]
    assert table.side.caption(int(row["cap_offset"]), int(row["cap_length"])) == "A bright square moves left."
    assert table.side.points(int(row["lm_start"]), int(row["lm_stop"])).shape == (4, 68, 2)


def test_a_dataset_with_nothing_decoded_and_dropped_one_frame_clips(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    ids = write_synthetic_dataset(tmp_path, "none", num_classes=2, clips_per_class=1, frames=2, size=8,
                                  num_shards=1, failed={"frames": ["none_00_000", "none_01_000"]})
    with caplog.at_level("WARNING", logger="dfer.train.data"):
        table = load_clip_table(tmp_path, "none", Needs())
    assert not any("one-frame" in r.getMessage() for r in caplog.records)
    assert table.clips.empty and list(table.clips.columns) == ["clip_id", "label", "label_idx", "test_fold",
                                                               "shard", "one_frame", "static"]
    assert str(table.clips["static"].dtype) == "bool" and table.static is False  # no clip: not static
    assert str(table.clips["one_frame"].dtype) == "bool" and str(table.clips["label_idx"].dtype) == "int64"
    assert sorted(table.lost["clip_id"]) == ids and set(table.lost["stage"]) == {"decode"}
    write_synthetic_dataset(tmp_path, "one", num_classes=2, clips_per_class=1, frames=2, size=8, num_shards=1)
    index = shard_file(tmp_path, "one", "frames", "000", ".parquet")
    frame = read_parquet(index)
    frame.loc[frame["clip_id"] == "one_00_000", "num_source_frames"] = 1
    write_parquet(index, frame, read_meta(index))
    man = manifest_file(tmp_path, "one")
    meta = {k: v for k, v in read_meta(man).items() if k != "layout"}
    write_parquet(man, read_parquet(man), meta)  # no layout, no label order: named after the dataset
    dropped = load_clip_table(tmp_path, "one", Needs(), one_frame_clips="drop")
    assert dropped.label_order == "one: the configured order (class0, class1)"
    assert dropped.clips["clip_id"].tolist() == ["one_01_000"] and dropped.clips.index.tolist() == [0]
    assert list(dropped.clips.columns) == ["clip_id", "label", "label_idx", "test_fold", "shard", "one_frame",
                                           "static"]
    assert dropped.clips["static"].tolist() == [False]
    # a still image has one source frame by design: static, not one_frame, so the drop keeps it
    frame["source_kind"] = "video"
    frame.loc[frame["clip_id"] == "one_01_000", "num_source_frames"] = 1
    frame.loc[frame["clip_id"] == "one_01_000", "source_kind"] = "image"
    write_parquet(index, frame, read_meta(index))
    still = load_clip_table(tmp_path, "one", Needs(), one_frame_clips="drop")
    assert still.clips["clip_id"].tolist() == ["one_01_000"] and still.clips["static"].tolist() == [True]
    assert still.clips["one_frame"].tolist() == [False] and still.static is True  # every clip an image
    kept = load_clip_table(tmp_path, "one", Needs())
    assert kept.clips["static"].tolist() == [False, True] and kept.clips["one_frame"].tolist() == [True, False]
    assert kept.static is False  # one video among them: not a still-image dataset


def test_one_frame_clips_are_named_in_a_warning_ten_at_most(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    ids = write_synthetic_dataset(tmp_path, "single", num_classes=1, clips_per_class=11, frames=2, size=8,
                                  num_shards=1)
    index = shard_file(tmp_path, "single", "frames", "000", ".parquet")
    frame = read_parquet(index)
    frame["num_source_frames"] = 1
    write_parquet(index, frame, read_meta(index))
    with caplog.at_level("WARNING", logger="dfer.train.data"):
        table = load_clip_table(tmp_path, "single", Needs())
    assert table.clips["one_frame"].all() and table.account(1, "all").one_frame == 11
    assert [r.getMessage() for r in caplog.records if r.name == "dfer.train.data"] == [
        f"single: 11 one-frame clip(s), their single frame repeated as a video ({', '.join(sorted(ids)[:10])} ...); "
        "data.one_frame_clips: drop leaves them out"]
    frame.loc[frame["clip_id"] == sorted(ids)[0], "num_source_frames"] = 2  # ten left: all named
    write_parquet(index, frame, read_meta(index))
    caplog.clear()
    with caplog.at_level("WARNING", logger="dfer.train.data"):
        load_clip_table(tmp_path, "single", Needs())
    assert [r.getMessage() for r in caplog.records if r.name == "dfer.train.data"] == [
        f"single: 10 one-frame clip(s), their single frame repeated as a video ({', '.join(sorted(ids)[1:])}); "
        "data.one_frame_clips: drop leaves them out"]


def test_accounts_per_fold_and_split(results: Path) -> None:
    table = load_clip_table(results, "syn", ALL)
    one = table.account(1, "test")
    assert (one.listed, one.evaluated, one.one_frame, one.complete) == (4, 1, 0, False)
    assert one.lost == {"decode unexpected": 1, "landmarks unexpected": 1, "parsing absent": 1}
    assert one.text() == ("evaluated 1 of 4 test clips (not scored: decode unexpected: 1, landmarks "
                          "unexpected: 1, parsing absent: 1)")
    assert one.lost_clips["clip_id"].tolist() == ["syn_00_002", "syn_01_000", "syn_01_002"]
    two = table.account(2, "test")
    assert (two.listed, two.evaluated) == (5, 2)
    assert two.text("clips", "exclude") == ("evaluated 2 of 5 clips (not scored: captions unexpected: 1, "
                                            "manifest missing_file: 1, parsing unexpected: 1; left out of the metrics)")
    assert two.text(policy="wrong").endswith("parsing unexpected: 1; counted as wrong)")
    every = table.account(1, "all")
    assert (every.listed, every.evaluated, sum(every.lost.values())) == (9, 3, 6)
    train = table.account(1, "train")
    assert (train.listed, train.evaluated) == (5, 2)


def test_optional_captions_keep_the_clip_without_one(results: Path) -> None:
    table = load_clip_table(results, "syn", ALL, optional_captions=True)
    clips = table.clips.set_index("clip_id")
    assert list(clips.index) == ["syn_00_000", "syn_00_001", "syn_00_003", "syn_01_003"]
    assert (clips.loc["syn_00_001", "cap_offset"], clips.loc["syn_00_001", "cap_length"]) == (-1, 0)
    assert str(table.clips["cap_offset"].dtype) == "int64" and str(table.clips["cap_length"].dtype) == "int64"
    # frames only: no side store, nothing lost but the decode failure and the skipped clip
    frames = load_clip_table(results, "syn", Needs())
    assert frames.side is None and len(frames.clips) == 7 and "lm_start" not in frames.clips
    assert sorted(frames.lost["stage"]) == ["decode", "manifest"]
    assert frames.has_captions is False
    with pytest.raises(ValueError, match=r"data.one_frame_clips must be 'keep' or 'drop', got 'x'"):
        load_clip_table(results, "syn", Needs(), one_frame_clips="x")


def test_items_hold_the_stored_frames_and_caption(results: Path) -> None:
    table = load_clip_table(results, "syn", ALL, optional_captions=True)
    stored = load_file(str(shard_file(results, "syn", "frames", "000", ".safetensors")))
    cfg = DataConfig(num_frames=4, flip=False, num_workers=0)
    ds = ClipDataset("syn", table.clips, table, ALL, cfg, image_size=8, train=False,
                     renderers=(lambda p, s: np.zeros((s, s, 3), np.uint8),
                                lambda m, s: np.repeat(m[:, :, None] * 10, 3, axis=2)))
    assert len(ds) == 4
    item = ds[0]
    assert item["clip_id"] == "syn_00_000" and item["label"] == 0
    assert item["caption"] == "A bright square moves right."
    np.testing.assert_array_equal(item["frames"].numpy(), stored["syn_00_000"])
    maps = load_file(str(shard_file(results, "syn", "parsing", "000", ".safetensors")))["syn_00_000"]
    np.testing.assert_array_equal(item["parsing"].numpy()[..., 0], maps * 10)
    assert item["landmarks"].shape == (4, 8, 8, 3)
    assert ds[1]["caption"] is None and ds[1]["clip_id"] == "syn_00_001"  # no caption: None
    marks_only = ClipDataset("syn", table.clips, table, Needs(landmarks=True), cfg, 8, train=False,
                             renderers=ds.renderers())[0]
    assert set(marks_only) == {"frames", "landmarks", "label", "clip_id"}  # no caption, no parsing
    batch = collate([ds[0], ds[3]])
    assert batch["clip_id"] == ["syn_00_000", "syn_01_003"] and batch["label"].tolist() == [0, 1]
    assert batch["label"].dtype == torch.long and batch["frames"].shape == (2, 4, 8, 8, 3)
    assert batch["captions"] == ["A bright square moves right.", "A bright square moves left."]
    # a flipped training item: the frames mirrored left-right, chosen per (seed, epoch, index)
    flips = ClipDataset("syn", table.clips, table, ALL, DataConfig(num_frames=4, num_workers=0), 8,
                        train=True, seed=3, renderers=ds.renderers())
    for i in range(4):
        flipped = bool(np.random.default_rng([3, 0, i]).random() < 0.5)
        want = stored[table.clips.iloc[i]["clip_id"]]
        np.testing.assert_array_equal(flips[i]["frames"].numpy(), want[:, :, ::-1] if flipped else want)
    assert any(np.random.default_rng([3, 0, i]).random() < 0.5 for i in range(4))
    assert not all(np.random.default_rng([3, 0, i]).random() < 0.5 for i in range(4))


def test_errors_name_the_clip_and_what_is_missing(results: Path) -> None:
    frames_only = load_clip_table(results, "syn", Needs())
    ds = ClipDataset("syn", frames_only.clips, frames_only, Needs(landmarks=True), DataConfig(num_workers=0), 8,
                     train=False)
    with pytest.raises(RuntimeError, match=r"^syn/syn_00_000 \(shard 000\): ValueError: the clip table was "
                                           r"loaded without landmarks / captions"):
        ds[0]
    no_inputs = load_clip_table(results, "syn", Needs())
    no_inputs.inputs = None
    with pytest.raises(ValueError, match="^the clip table carries no input files; build it with read_clip_table$"):
        ClipDataset("syn", no_inputs.clips, no_inputs, Needs(), DataConfig(), 8, train=False)


def test_shards_labels_and_preprocessing_settings(results: Path, tmp_path: Path) -> None:
    assert dataset_shards(results, "syn") == ["000"]
    assert dataset_labels(results, "syn") == (["class0", "class1"], 2)
    with pytest.raises(FileNotFoundError, match=r"no shard manifests under .*none/manifest; run the manifest stage"):
        dataset_shards(results, "none")
    with pytest.raises(FileNotFoundError, match=r"manifest .*nothing.parquet does not exist; run the manifest"):
        manifest_labels(tmp_path / "nothing.parquet")
    bare = tmp_path / "bare.parquet"
    write_parquet(bare, read_parquet(manifest_file(results, "syn")), {"num_folds": 3})
    with pytest.raises(ValueError, match=r"bare.parquet has no 'labels' in its metadata"):
        manifest_labels(bare)
    folds32 = tmp_path / "folds32.parquet"
    write_parquet(folds32, read_parquet(manifest_file(results, "syn")).astype({"test_fold": "int32"}), {"labels": ["x"]})
    listed = listed_clips(folds32, ["000"])  # no skipped clips: the manifest's int32 folds, as int64
    assert str(listed["test_fold"].dtype) == "int64" and len(listed) == 8
    one_fold = tmp_path / "one.parquet"
    write_parquet(one_fold, read_parquet(manifest_file(results, "syn")), {"labels": ["x"]})
    assert manifest_labels(one_fold) == (["x"], 1)
    inputs = DataInputs.from_results(results, "syn", ALL)
    assert preprocessing_params(inputs, ALL) == {"decode": {"size": 8}, "landmarks": {}, "parsing": {}}
    assert preprocessing_params(inputs, Needs()) == {"decode": {"size": 8}}


def test_split_account_text_and_fold_split_by_hand() -> None:
    import pandas as pd

    account = SplitAccount(listed=3, evaluated=3, lost={}, one_frame=0, lost_clips=pd.DataFrame())
    assert account.complete and account.lost_text() == "" and account.text() == "evaluated 3 of 3 test clips"
    account = SplitAccount(5, 3, {"z b": 1, "a c": 1}, 2, pd.DataFrame())
    assert account.lost_text() == "a c: 1, z b: 1"
    assert account.text("clips", "other") == "evaluated 3 of 5 clips (not scored: a c: 1, z b: 1); 2 one-frame clip(s) among them"
    clips = pd.DataFrame({"clip_id": ["a", "b", "c"], "test_fold": [1, 2, 1]}, index=[5, 6, 7])
    assert fold_split(clips, 1, "test")["clip_id"].tolist() == ["a", "c"]
    assert fold_split(clips, 1, "train")["clip_id"].tolist() == ["b"]
    assert fold_split(clips, 1, "all")["clip_id"].tolist() == ["a", "b", "c"]
    assert fold_split(clips, 1, "test").index.tolist() == [0, 1]
    assert fold_split(clips, 1, "test").columns.tolist() == ["clip_id", "test_fold"]
    with pytest.raises(ValueError, match=r"unknown split 'dev'; expected train, test or all"):
        fold_split(clips, 1, "dev")


def test_account_of_a_table_without_listed_or_lost_clips() -> None:
    import pandas as pd

    clips = pd.DataFrame({"clip_id": ["a", "b", "c"], "test_fold": [1, 1, 2]}, index=[4, 5, 6])
    table = ClipTable(clips, ["x"], 2, {})
    account = table.account(1, "test")
    assert (account.listed, account.evaluated, account.lost, account.one_frame) == (2, 2, {}, 0)
    assert account.lost_clips.columns.tolist() == LOST_COLUMNS and account.lost_clips.empty
    lost = pd.DataFrame({"clip_id": ["z"], "label": ["x"], "test_fold": [1], "stage": ["decode"],
                         "error_type": ["corrupt"]}, index=[9])
    flagged = clips.assign(one_frame=[True, False, True])
    account = ClipTable(flagged, ["x"], 2, {}, listed=clips, lost=lost).account(1, "test")
    assert account.one_frame == 1 and account.lost == {"decode corrupt": 1}
    assert account.lost_clips.columns.tolist() == LOST_COLUMNS and account.lost_clips.index.tolist() == [0]


def test_prepare_clip_checks_and_scales(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DataConfig(num_frames=2, landmarks_on_face=False)
    with pytest.raises(ValueError, match=r"^frames have shape \(2, 8, 8, 4\), expected \[T, S, S, 3\]$"):
        prepare_clip(np.zeros((2, 8, 8, 4), np.uint8), None, None, cfg, 8, None)
    with pytest.raises(ValueError, match=r"^frames have shape \(2, 8, 3\), expected"):
        prepare_clip(np.zeros((2, 8, 3), np.uint8), None, None, cfg, 8, None)
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"^rendering landmarks needs renderers$"):
        prepare_clip(frames, np.zeros((2, 68, 2)), None, cfg, 8, None)
    with pytest.raises(ValueError, match=r"^rendering parsing maps needs renderers$"):
        prepare_clip(frames, None, np.zeros((2, 8, 8), np.uint8), cfg, 8, None)
    got: dict = {"points": [], "sizes": []}

    def marks(points: np.ndarray, size: int) -> np.ndarray:
        got["points"].append(points[0].tolist())
        return np.zeros((size, size, 3), np.uint8)

    def parsing(label_map: np.ndarray, size: int) -> np.ndarray:
        got["sizes"].append(size)
        return np.zeros((size, size, 3), np.uint8)

    points = np.full((2, 68, 2), 3.0)
    item = prepare_clip(frames, points, np.zeros((2, 8, 8), np.uint8), cfg, 16, (marks, parsing))
    assert got["points"] == [[6.0, 6.0]] * 2  # crop 8 -> 16 px: points doubled
    assert got["sizes"] == [16, 16] and item["parsing"].shape == (2, 16, 16, 3)


def test_items_of_a_frames_only_table_and_training_draws(results: Path) -> None:
    table = load_clip_table(results, "syn", Needs())
    cfg = DataConfig(num_frames=2, temporal_jitter=True, max_open_shards=2, num_workers=0)
    subset = table.clips.iloc[2:]
    ds = ClipDataset("syn", subset, table, Needs(), cfg, 8, train=True)
    assert ds.clips.columns.tolist() == table.clips.columns.tolist() and ds.clips.index.tolist() == [0, 1, 2, 3, 4]
    assert ds.reader.max_open == 2 and ds.seed == 0
    stored = load_file(str(shard_file(results, "syn", "frames", "000", ".safetensors")))
    want = stored[ds.clips.iloc[0]["clip_id"]]
    seen = set()
    for epoch in range(6):
        ds.epoch = epoch
        item = ds[0]
        assert "landmarks" not in item and "parsing" not in item and "caption" not in item
        frames = item["frames"].numpy()
        if np.random.default_rng([0, epoch, 0]).random() < 0.5:  # the flip of the default seed 0
            frames = frames[:, :, ::-1]
        # each of the 2 frames is one of its segment's stored frames (0-1, 2-3)
        picks = tuple(next(k for k in range(4) if np.array_equal(f, want[k])) for f in frames)
        assert picks[0] in (0, 1) and picks[1] in (2, 3)
        seen.add(picks)
    assert len(seen) > 1  # training draws differ between epochs
    # and are the same again for the same (seed, epoch, clip): the jitter's own stream
    for epoch in (1, 4):
        ds.epoch = epoch
        a, b = ds[0]["frames"].numpy(), ds[0]["frames"].numpy()
        np.testing.assert_array_equal(a, b)
        drawn = jittered_indices(4, 2, np.random.default_rng([0, epoch, 0, 1]))
        flip = np.random.default_rng([0, epoch, 0]).random() < 0.5
        np.testing.assert_array_equal(a[:, :, ::-1] if flip else a, want[drawn])
    evaluation = ClipDataset("syn", subset, table, Needs(), cfg, 8, train=False)
    for epoch in range(3):
        evaluation.epoch = epoch
        np.testing.assert_array_equal(evaluation[0]["frames"].numpy(), want[[0, 3]])  # evenly spaced
    with pytest.raises(RuntimeError, match=r"the clip table was loaded without landmarks / captions; load it "
                                           r"with the Needs of this dataset$"):
        ClipDataset("syn", subset, table, Needs(landmarks=True), cfg, 8, train=False)[0]


def test_collate_one_item_and_every_level() -> None:
    item = {"clip_id": "a", "label": 2, "frames": torch.zeros(2, 4, 4, 3, dtype=torch.uint8),
            "landmarks": torch.ones(1, 4, 4, 3, dtype=torch.uint8), "parsing": torch.full((1, 4, 4, 3), 2),
            "caption": None}
    batch = collate([item])
    assert batch["clip_id"] == ["a"] and batch["label"].tolist() == [2] and batch["captions"] == [None]
    assert batch["landmarks"].shape == (1, 1, 4, 4, 3) and batch["landmarks"].max() == 1
    assert batch["parsing"].shape == (1, 1, 4, 4, 3) and batch["parsing"].max() == 2
    assert set(collate([{k: v for k, v in item.items() if k != "caption"}])) == {
        "clip_id", "label", "frames", "landmarks", "parsing"}


def test_renderers_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "dfer.train.render", None)
    with pytest.raises(ImportError, match=r"^dfer.train.render \(render_landmarks / render_parsing\) is needed "
                                          r"for the middle level; switch it off with use_parsing/use_landmarks: false$"):
        default_renderers()


def test_resize_averages_by_hand_and_renderers_are_the_real_ones() -> None:
    images = torch.tensor([[[[0] * 3, [10] * 3], [[20] * 3, [30] * 3]]], dtype=torch.uint8)  # [1, 2, 2, 3]
    assert _resize(images, 2) is images
    one = _resize(images, 1)
    assert one.shape == (1, 1, 1, 3) and one.dtype == torch.uint8 and one.flatten().tolist() == [15, 15, 15]
    big = _resize(images, 4)
    assert big.shape == (1, 4, 4, 3) and big[0, 0, 0, 0] == 0 and big[0, 3, 3, 0] == 30
    # antialiased 4 -> 1: a triangle filter 4 px wide, weights 1 - |x + 0.5 - 2| / 4 = 0.625, 0.875,
    # 0.875, 0.625 (/ 3); the 0 centre (rows and columns 1-2) weighs (1.75 / 3)^2 = 0.3403, so a
    # 255 border gives 255 * 0.6597 = 168.2. Without antialiasing: the centre's 0.
    ring = torch.full((1, 4, 4, 3), 255, dtype=torch.uint8)
    ring[0, 1:3, 1:3] = 0
    assert _resize(ring, 1).flatten().tolist() == [168, 168, 168]
    assert _resize(torch.zeros(1, 2, 4, 3, dtype=torch.uint8), 2).shape == (1, 2, 2, 3)  # not square
    assert _resize(torch.zeros(1, 4, 2, 3, dtype=torch.uint8), 2).shape == (1, 2, 2, 3)
    from dfer.train.render import render_landmarks, render_parsing

    assert default_renderers() == (render_landmarks, render_parsing)
