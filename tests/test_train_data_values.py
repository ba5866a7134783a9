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
from dfer.core.paths import manifest_file, shard_file
from dfer.train.config import DataConfig
from dfer.train.data import (
    LOST_COLUMNS,
    ClipDataset,
    SplitAccount,
    _resize,
    collate,
    dataset_labels,
    dataset_shards,
    default_renderers,
    fold_split,
    load_clip_table,
    manifest_labels,
    preprocessing_params,
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


def test_table_keeps_complete_clips_and_loses_each_other_clip_once(results: Path) -> None:
    table = load_clip_table(results, "syn", ALL)
    clips = table.clips
    assert clips["clip_id"].tolist() == ["syn_00_000", "syn_00_003", "syn_01_003"]  # sorted
    assert clips["label"].tolist() == ["class0", "class0", "class1"]
    assert clips["label_idx"].tolist() == [0, 0, 1] and clips["test_fold"].tolist() == [1, 2, 2]
    assert clips["shard"].tolist() == ["000"] * 3 and not clips["one_frame"].any()
    assert str(clips["label_idx"].dtype) == "int64" and str(clips["test_fold"].dtype) == "int64"
    assert ((clips["lm_stop"] - clips["lm_start"]) == 4).all() and (clips["cap_length"] > 0).all()
    assert (table.labels, table.num_folds, table.has_captions) == (["class0", "class1"], 2, True)
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
    with pytest.raises(ValueError, match="carries no input files; build it with read_clip_table"):
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
    with pytest.raises(ValueError, match=r"unknown split 'dev'; expected train, test or all"):
        fold_split(clips, 1, "dev")


def test_resize_averages_by_hand_and_renderers_are_the_real_ones() -> None:
    images = torch.tensor([[[[0] * 3, [10] * 3], [[20] * 3, [30] * 3]]], dtype=torch.uint8)  # [1, 2, 2, 3]
    assert _resize(images, 2) is images
    one = _resize(images, 1)
    assert one.shape == (1, 1, 1, 3) and one.dtype == torch.uint8 and one.flatten().tolist() == [15, 15, 15]
    big = _resize(images, 4)
    assert big.shape == (1, 4, 4, 3) and big[0, 0, 0, 0] == 0 and big[0, 3, 3, 0] == 30
    from dfer.train.render import render_landmarks, render_parsing

    assert default_renderers() == (render_landmarks, render_parsing)
