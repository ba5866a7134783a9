"""S2D through the normal trainer: landmark feature shards made by the landmark-feature stage,
train and evaluate one fold with a tiny random-init ViT, and the checks on the way in (a map of
the wrong kind, geometric augmentation, a static checkpoint as the backbone).

Expected values come from an independent clip-by-clip forward pass of the saved checkpoint on
frames and maps picked here by hand (window_centre: the middle 4 of 6 stored frames)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from support.dataset import write_synthetic_dataset

from dfer.core.paths import FAILURES, PARQUET, SAFETENSORS, shard_file
from dfer.landmark_features import WrongFeatureKindError, run_shard
from dfer.methods import api
from dfer.methods.checkpoint import load_checkpoint, read_checkpoint
from dfer.methods.registry import build_model, get_method
from dfer.train.evaluate import evaluate_checkpoint
from dfer.train.fit import train_fold

LABELS = ["happiness", "sadness", "neutral", "anger", "surprise"]
#: a 28 px / 2 px ViT: the 14 x 14 patch grid of the stored maps, as ViT-B/16 at 224 px
TINY = {"method": "s2d", "img_size": 28, "patch_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 2,
        "adapter_heads": 2, "num_frames": 4, "head_dropout": 0.0}


def run_params(**model) -> dict:
    return {
        "device": "cpu", "model": {**TINY, **model},
        "data": {"batch_size": 8, "num_workers": 0, "num_frames": 4},
        "trainer": {"max_epochs": 1, "seed": 0, "log_every_n_steps": 1, "precision": "32-true",
                    "check_val_every_n_epoch": 0},
        "optim": {"lr": 1e-3},
    }


def fake_maps(frames: np.ndarray, cfg) -> np.ndarray:
    """Maps that depend on the frames (their mean colour per grid cell, spread over 128
    channels): cheaper than a random MobileFaceNet on this shared CPU, and written by the
    stage's own shard writer with the stage's provenance."""
    cells = frames.astype(np.float32).reshape(len(frames), 14, frames.shape[1] // 14, 14, -1, 3)[..., :1, :]
    grid = cells.mean(axis=(2, 4, 5)) / 255.0  # [T, 14, 14]
    return np.stack([grid * (c + 1) / 128 for c in range(128)], axis=1)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """5 classes x 4 clips of 6 frames (28 px), 2 folds, and their landmark feature maps."""
    root = tmp_path_factory.mktemp("s2d")
    write_synthetic_dataset(root, "syn", num_classes=5, clips_per_class=4, frames=6, size=28, num_shards=1,
                            labels=LABELS)
    mp = pytest.MonkeyPatch()
    mp.setattr("dfer.landmark_features.shard.extract_features", fake_maps)
    mp.setattr("dfer.landmark_features.shard.load_model", lambda cfg: None)
    run_shard(shard_file(root, "syn", "frames", "000", SAFETENSORS), shard_file(root, "syn", "frames", "000", PARQUET),
              shard_file(root, "syn", "landmark_features", "000", SAFETENSORS),
              shard_file(root, "syn", "landmark_features", "000", PARQUET),
              shard_file(root, "syn", "landmark_features", "000", FAILURES),
              {"backend": "mobilefacenet", "random_init": True, "device": "cpu", "dtype": "float32"})
    mp.undo()
    return root


def test_s2d_trains_and_evaluates_on_stored_landmark_features(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "fold-1"
    ckpt = train_fold(results, "syn", 1, "s2d", run_params(), out)
    summary = json.loads((out / "train.json").read_text())
    assert summary["method"] == "s2d"
    # tunable: everything but patch_embed / cls_token / pos_embed / blocks (hand count for this size)
    d, hid, k = 32, 8, 5
    mcp = 2 * (d * 8 + 8) + (8 * d + d) + 1
    tma = (d * hid + hid) + (hid * 3 * hid) + (hid * hid + hid) + (hid * d + d) + 2 * d + (d * hid + hid) + (hid * d + d)
    want = (128 * d + d) + 2 * (2 * d) + 2 * mcp + 2 * tma + 4 * d + 2 * d + (d * k + k)
    assert summary["parameters"]["tunable_total"] == want
    state, meta = read_checkpoint(ckpt)
    assert meta["method"] == "s2d" and meta["checkpoint_policy"] == "full"
    assert "blocks.0.attn.qkv.weight" in state  # full: the frozen backbone travels with the file

    metrics = evaluate_checkpoint(ckpt, results, "syn", 1, tmp_path / "eval", device="cpu")
    assert metrics["method"] == "s2d"
    preds = pd.read_parquet(tmp_path / "eval" / "predictions.parquet").set_index("clip_id")
    model, _ = load_checkpoint(ckpt)
    with safe_open(str(shard_file(results, "syn", "frames", "000", SAFETENSORS)), "numpy") as fr, \
            safe_open(str(shard_file(results, "syn", "landmark_features", "000", SAFETENSORS)), "numpy") as lf:
        for clip_id in preds.index:
            frames = torch.from_numpy(fr.get_tensor(clip_id)[1:5])[None]  # window_centre of 6: frames 1-4
            maps = torch.from_numpy(lf.get_tensor(clip_id)[1:5].astype(np.float32))[None]
            with torch.no_grad():
                want_p = model(frames, maps).probabilities()[0].numpy()
            np.testing.assert_allclose(np.asarray(preds.loc[clip_id, "probs"]), want_p, atol=1e-4)
    # the settings the maps were made with travel with the checkpoint, for dfer predict
    assert meta["preprocessing"]["landmark_features"] == {
        "backend": "mobilefacenet", "weights": None, "random_init": True, "init_seed": 0,
        "normalization": "imagenet", "crop_margin": 0.25, "flip_input": False, "dtype": "float32"}


def test_a_map_of_another_kind_is_refused(results: Path, tmp_path: Path) -> None:
    with pytest.raises(WrongFeatureKindError, match=r"'mobilefacenet_conv4' \(128 channels.*'fan_heatmap_14'"):
        train_fold(results, "syn", 1, "s2d", run_params(landmark_kind="fan_heatmap_14", landmark_channels=68),
                   tmp_path / "x")


def test_geometric_augmentation_is_refused_for_stored_maps(results: Path, tmp_path: Path) -> None:
    params = run_params()
    params["data"]["flip"] = True
    with pytest.raises(ValueError, match="data.flip / rotation / crop_scale move the frames"):
        train_fold(results, "syn", 1, "s2d", params, tmp_path / "x")


def test_static_checkpoint_of_a_static_run_starts_the_video_model(results: Path, tmp_path: Path) -> None:
    """A static run (temporal: false, tuned backbone) saves a checkpoint; a video model built
    with it as `pretrained` has its backbone and MCPs, the head rows in its own class order, and
    new TMAs; the SDL queues of the static run are not carried over."""
    static_ckpt = train_fold(results, "syn", 1, "s2d_static",
                             run_params(temporal=False, tune_backbone=True, num_frames=4, sdl=True), tmp_path / "st")
    state, meta = read_checkpoint(static_ckpt)
    assert not any(k.startswith(("tmas.", "temporal_embedding")) for k in state)
    reordered = LABELS[::-1]
    torch.manual_seed(1)
    video = build_model("s2d", {**{k: v for k, v in TINY.items() if k != "method"},
                                "pretrained": str(static_ckpt)}, reordered)
    own = video.state_dict()
    for key in ("blocks.1.mlp.fc2.weight", "patch_embed.proj.weight", "prompters.1.frame_proj.weight",
                "landmark_embed.weight", "ln_post.weight"):
        assert torch.equal(own[key], state[key]), key
    order = [LABELS.index(c) for c in reordered]
    assert torch.equal(own["head.weight"], state["head.weight"][order])
    torch.manual_seed(1)
    fresh = build_model("s2d", {k: v for k, v in TINY.items() if k != "method"}, reordered)
    assert torch.equal(own["tmas.0.t_down.weight"], fresh.state_dict()["tmas.0.t_down.weight"])
    # another class set: the head stays at its initialisation
    other = build_model("s2d", {**{k: v for k, v in TINY.items() if k != "method"},
                                "pretrained": str(static_ckpt)}, ["a", "b", "c", "d", "e"])
    assert not torch.equal(other.state_dict()["head.weight"], state["head.weight"])


def test_s2d_counts_the_published_tunable_parameters_through_the_registry() -> None:
    """ViT-B/16 with 7 classes on the meta device: 9,258,451 (METHODS.md 3f), the public 9.26 M."""
    with torch.device("meta"):
        model = build_model("s2d", {}, ["a"] * 7)
    counts = api.count_parameters(model, get_method("s2d"))
    assert counts["tunable_total"] == 9_258_451 and round(counts["tunable_total"] / 1e6, 2) == 9.26
    # frozen: patch embedding 590,592 + CLS 768 + positions 197 x 768 + 12 blocks x 7,087,872
    assert counts["backbone"] == 0 and counts["frozen"] == 590_592 + 768 + 151_296 + 12 * 7_087_872 == 85_797_120
