"""Evaluation over the whole official test split: ``evaluated N of M`` (issue 22).

A synthetic fold lists 6 test clips; one has an empty caption (the captions stage recorded it
as a failure) and one failed at decode. The default model uses captions only in its training
loss, so the first is scored and the second, which has no frames, counts as a wrong
prediction: N = 5 of M = 6. Expected UAR / WAR are computed by hand from the model's own
per-clip scores (a forward pass here, one clip at a time, on frames read straight from the
shard), never from what the evaluation wrote. The caption-fused and "High only" variants are
checked the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from support.dataset import write_synthetic_dataset

from dfer.core.paths import shard_file
from dfer.model.checkpoint import load_checkpoint, save_checkpoint
from dfer.model.config import ModelConfig
from dfer.model.fineclip import FineCLIPER
from dfer.train.evaluate import evaluate_checkpoint, summarize_folds

DS = "cov"
EMPTY_CAPTION = "cov_00_000"  # fold 1 test clip whose caption is empty after refinement
FAILED_DECODE = "cov_01_000"  # fold 1 test clip whose decode failed
SIZE = 64  # the tiny backbone's input size: no resize anywhere, so the reference is exact


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cov")
    write_synthetic_dataset(root, DS, num_classes=3, clips_per_class=4, num_folds=2, frames=4,
                            size=SIZE, num_shards=1,
                            failed={"captions": [EMPTY_CAPTION], "frames": [FAILED_DECODE]})
    return root


def fold_truth(results: Path) -> dict[str, int]:
    """Test clips of fold 1 as the split lists them (the manifest), failed ones included."""
    manifest = pd.read_parquet(results / DS / "manifest" / "manifest.parquet")
    test = manifest[manifest["test_fold"] == 1]
    return dict(zip(test["clip_id"], test["label_idx"].astype(int), strict=True))


def checkpoint(tmp_path: Path, name: str, fusion: list[float] | None = None, **model) -> Path:
    """A checkpoint of an untrained tiny model (its scores are what they are; evaluation must
    report them); ``fusion`` sets the fusion logits so that the levels weigh differently."""
    cfg = ModelConfig.from_dict({"backbone": "tiny", "pretrained": None, "use_parsing": False,
                                 "use_landmarks": False, **model})
    net = FineCLIPER(cfg, [f"class{c}" for c in range(3)])
    if fusion is not None:
        with torch.no_grad():
            net.fusion_logits.copy_(torch.tensor(fusion))
    path = tmp_path / name / "checkpoint.safetensors"
    save_checkpoint(path, net, dataset=DS, run=name,
                    params={"data": {"num_frames": 4, "batch_size": 4, "num_workers": 0}})
    return path


def clip_frames(results: Path, clip_id: str) -> torch.Tensor:
    with safe_open(str(shard_file(results, DS, "frames", "000", ".safetensors")), framework="numpy") as fh:
        return torch.from_numpy(fh.get_tensor(clip_id))[None]


def caption_of(results: Path, clip_id: str) -> str | None:
    table = pd.read_parquet(shard_file(results, DS, "captions", "000", ".parquet"))
    hit = table.loc[table["clip_id"] == clip_id, "caption"]
    return str(hit.iloc[0]) if len(hit) else None


def hand_uar_war(truth: dict[str, int], pred: dict[str, int], num_classes: int = 3
                 ) -> tuple[float, float]:
    """UAR / WAR over every clip of ``truth``; a clip absent from ``pred`` is a wrong answer."""
    recalls = []
    for c in range(num_classes):
        clips = [k for k, t in truth.items() if t == c]
        if clips:
            recalls.append(sum(pred.get(k) == c for k in clips) / len(clips))
    return sum(recalls) / len(recalls), sum(pred.get(k) == t for k, t in truth.items()) / len(truth)


def test_default_model_scores_the_clip_without_caption_and_counts_the_failed_decode(
        results: Path, tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path, "default")
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(ckpt, results, DS, 1, out, device="cpu")
    truth = fold_truth(results)
    assert len(truth) == 6 and EMPTY_CAPTION in truth and FAILED_DECODE in truth
    model, _ = load_checkpoint(ckpt)
    with torch.no_grad():  # captions never change a prediction of the default model
        pred = {c: int(model(frames=clip_frames(results, c)).logits.argmax()) for c in truth
                if c != FAILED_DECODE}
    preds = pd.read_parquet(out / "predictions.parquet")
    assert dict(zip(preds["clip_id"], preds["pred_idx"], strict=True)) == pred  # incl. EMPTY_CAPTION
    uar, war = hand_uar_war(truth, pred)
    assert metrics["uar"] == pytest.approx(uar, abs=1e-12)
    assert metrics["war"] == pytest.approx(war, abs=1e-12)
    assert metrics["num_clips"] == 6
    scored = {k: v for k, v in truth.items() if k != FAILED_DECODE}
    s_uar, s_war = hand_uar_war(scored, pred)
    assert metrics["scored_only"] == {"uar": pytest.approx(s_uar, abs=1e-12),
                                      "war": pytest.approx(s_war, abs=1e-12), "num_clips": 5}
    assert metrics["test_clips"] == {
        "listed": 6, "evaluated": 5, "not_scored": 1, "lost": {"decode unexpected": 1},
        "one_frame": 0, "unscored_clips": "wrong",
        "text": "evaluated 5 of 6 test clips (not scored: decode unexpected: 1; counted as wrong)"}
    assert metrics["not_scored_clips"] == [{"clip_id": FAILED_DECODE, "label": "class1",
                                            "test_fold": 1, "stage": "decode",
                                            "error_type": "unexpected"}]
    assert metrics["label_order"].startswith("synthetic")
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test_clips"] == metrics["test_clips"]

    # the switch: the failed clip left out, metrics over the 5 scored clips
    excluded = evaluate_checkpoint(ckpt, results, DS, 1, tmp_path / "ex", device="cpu",
                                   data={"unscored_clips": "exclude"})
    assert excluded["uar"] == pytest.approx(s_uar, abs=1e-12)
    assert excluded["war"] == pytest.approx(s_war, abs=1e-12)
    assert excluded["num_clips"] == 5
    assert excluded["test_clips"]["text"] == ("evaluated 5 of 6 test clips (not scored: decode "
                                              "unexpected: 1; left out of the metrics)")

    # a zero-shot target (`--split all`) is counted the same way: every clip it lists
    every = evaluate_checkpoint(ckpt, results, DS, 1, tmp_path / "all", split="all", device="cpu")
    assert every["test_clips"]["text"] == ("evaluated 11 of 12 clips (not scored: decode "
                                           "unexpected: 1; counted as wrong)")


def test_summary_adds_the_folds_counts(tmp_path: Path) -> None:
    paths = []
    for fold, (n, m, lost) in enumerate([(5, 6, {"decode corrupt": 1}), (6, 6, {})], start=1):
        path = tmp_path / f"fold-{fold}" / "metrics.json"
        path.parent.mkdir()
        path.write_text(json.dumps({
            "run": "r", "dataset": DS, "trained_on": DS, "labels": ["a", "b"], "fold": fold,
            "uar": 0.5, "war": 0.5, "num_clips": m, "per_class_accuracy": {"a": 0.5, "b": 0.5},
            "test_clips": {"listed": m, "evaluated": n, "lost": lost}}))
        paths.append(path)
    summary = summarize_folds(paths, tmp_path / "summary.json")
    assert summary["test_clips"] == {"listed": 12, "evaluated": 11, "not_scored": 1,
                                     "lost": {"decode corrupt": 1},
                                     "text": "evaluated 11 of 12 test clips (not scored: decode "
                                             "corrupt: 1)"}
    assert [(f["evaluated"], f["listed"]) for f in summary["per_fold"]] == [(5, 6), (6, 6)]
    assert json.loads((tmp_path / "summary.json").read_text())["test_clips"]["evaluated"] == 11


def test_caption_in_fusion_scores_a_clip_without_caption_on_its_video(results: Path,
                                                                       tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path, "fused", fusion=[0.4, -0.3], caption_in_fusion=True)
    metrics = evaluate_checkpoint(ckpt, results, DS, 1, tmp_path / "e", device="cpu")
    assert metrics["test_clips"]["evaluated"] == 5  # only the failed decode is lost
    model, _ = load_checkpoint(ckpt)
    truth = fold_truth(results)
    expected = {}
    w = torch.softmax(torch.tensor([0.4, -0.3]), 0)
    with torch.no_grad():
        for clip in truth:
            if clip == FAILED_DECODE:
                continue
            frames = clip_frames(results, clip)
            text = caption_of(results, clip)
            if text is None:  # no caption: the video feature alone, as its own level scores it
                out = model(frames=frames, captions=["a placeholder caption"])
                expected[clip] = (out.scale * out.level_scores["video"])[0]
            else:  # the video and caption features, mixed with the fusion weights, by hand
                out = model(frames=frames, captions=[text])
                fused = torch.nn.functional.normalize(
                    w[0] * out.level_features["video"] + w[1] * out.caption, dim=-1)
                expected[clip] = (out.scale * (fused @ torch.nn.functional.normalize(
                    model.descriptor_features()[0], dim=-1).T
                    - fused @ torch.nn.functional.normalize(model.descriptor_features()[1], dim=-1).T))[0]
    preds = pd.read_parquet(tmp_path / "e" / "predictions.parquet").set_index("clip_id")
    assert EMPTY_CAPTION in preds.index
    for clip, logits in expected.items():
        np.testing.assert_allclose(preds.loc[clip, "probs"], torch.softmax(logits, 0).numpy(),
                                   atol=1e-5, err_msg=clip)
    pred = {c: int(v.argmax()) for c, v in expected.items()}
    uar, war = hand_uar_war(truth, pred)
    assert metrics["uar"] == pytest.approx(uar, abs=1e-12)
    assert metrics["war"] == pytest.approx(war, abs=1e-12)


def test_high_only_model_cannot_score_a_clip_without_caption(results: Path, tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path, "high", use_video=False, caption_in_fusion=True)
    metrics = evaluate_checkpoint(ckpt, results, DS, 1, tmp_path / "h", device="cpu")
    assert metrics["test_clips"]["listed"] == 6 and metrics["test_clips"]["evaluated"] == 4
    assert metrics["test_clips"]["lost"] == {"captions unexpected": 1, "decode unexpected": 1}
    model, _ = load_checkpoint(ckpt)
    truth = fold_truth(results)
    with torch.no_grad():  # the caption is the only level: its text decides
        pred = {c: int(model(captions=[caption_of(results, c)]).logits.argmax()) for c in truth
                if c not in (FAILED_DECODE, EMPTY_CAPTION)}
    preds = pd.read_parquet(tmp_path / "h" / "predictions.parquet")
    assert dict(zip(preds["clip_id"], preds["pred_idx"], strict=True)) == pred
    uar, war = hand_uar_war(truth, pred)
    assert metrics["uar"] == pytest.approx(uar, abs=1e-12)
    assert metrics["war"] == pytest.approx(war, abs=1e-12)
    with pytest.raises(ValueError, match="high-only model cannot score a clip without a caption"):
        model(captions=["The mouth opens.", None])


def test_caption_levels_get_gradients_and_align_only_captioned_clips() -> None:
    torch.manual_seed(0)
    labels = ["class0", "class1", "class2"]
    frames = torch.randint(0, 256, (3, 2, SIZE, SIZE, 3), dtype=torch.uint8)
    targets = torch.tensor([0, 1, 2])
    caps = ["The mouth opens wide.", None, "The eyebrows rise."]

    fused = FineCLIPER(ModelConfig.from_dict({"backbone": "tiny", "pretrained": None,
                                              "use_parsing": False, "use_landmarks": False,
                                              "caption_in_fusion": True}), labels)
    assert fused.fused_levels == ["video", "caption"]
    out = fused(frames=frames, captions=caps)
    assert out.caption[1].abs().sum() == 0 and out.caption[0].abs().sum() > 0
    losses = fused.losses(out, targets)
    # the alignment over the two captioned clips, by hand
    has = torch.tensor([True, False, True])
    sims = out.level_features["video"][has] @ out.caption[has].T / fused.cfg.align_temperature
    idx = torch.arange(2)
    want = 0.5 * (torch.nn.functional.cross_entropy(sims, idx)
                  + torch.nn.functional.cross_entropy(sims.T, idx))
    torch.testing.assert_close(losses["align"], want)
    losses["loss"].backward()
    assert fused.fusion_logits.grad is not None and fused.fusion_logits.grad.abs().min() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in fused.caption_adapter.parameters())

    high = FineCLIPER(ModelConfig.from_dict({"backbone": "tiny", "pretrained": None,
                                             "use_video": False, "use_parsing": False,
                                             "use_landmarks": False, "caption_in_fusion": True}),
                      labels)
    assert high.fused_levels == ["caption"] and "video" not in high.vision_adapters
    out = high(captions=["The mouth opens wide.", "The lips press.", "The eyebrows rise."])
    torch.testing.assert_close(out.fused, out.caption)  # the caption is the whole prediction
    losses = high.losses(out, targets)
    assert "align" not in losses  # nothing to align a caption with
    losses["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in high.caption_adapter.parameters())
    with pytest.raises(ValueError, match="at least one visual level .* or captions as the only"):
        ModelConfig.from_dict({"use_video": False, "use_parsing": False, "use_landmarks": False})


@pytest.mark.slow
def test_high_only_trains_and_evaluates_end_to_end(results: Path, tmp_path: Path) -> None:
    from dfer.train.fit import train_fold

    params = {"device": "cpu", "dataset": DS,
              "model": {"backbone": "tiny", "pretrained": None, "use_video": False,
                        "use_parsing": False, "use_landmarks": False, "caption_in_fusion": True},
              "data": {"batch_size": 4, "num_workers": 0, "num_frames": 4},
              "optim": {"lr": 1e-2},
              "trainer": {"max_epochs": 2, "seed": 0, "log_every_n_steps": 1, "precision": "32-true"}}
    out = tmp_path / "fold-1"
    ckpt = train_fold(results, DS, 1, "high", params, out)
    before = FineCLIPER(ModelConfig.from_dict(params["model"]), [f"class{c}" for c in range(3)])
    trained, _ = load_checkpoint(ckpt)
    moved = [n for n, p in trained.tunable_state().items()
             if not torch.equal(p, before.tunable_state()[n])]
    assert any(n.startswith("caption_adapter") for n in moved)
    metrics = evaluate_checkpoint(ckpt, results, DS, 1, out, device="cpu")
    assert metrics["test_clips"]["evaluated"] == 4 and metrics["test_clips"]["listed"] == 6


def test_a_clip_the_manifest_skipped_still_counts_in_its_test_split(tmp_path: Path) -> None:
    """``on_missing: skip`` drops a clip whose video is missing from the manifest's rows; it is
    still one of the split's clips (M), lost at the manifest stage."""
    from dfer.core.artifacts import read_meta, read_parquet, write_parquet
    from dfer.core.paths import manifest_file
    from dfer.train.data import Needs, load_clip_table

    write_synthetic_dataset(tmp_path, DS, num_classes=2, clips_per_class=2, num_folds=2,
                            frames=2, size=32, num_shards=1)
    path = manifest_file(tmp_path, DS)
    meta = read_meta(path)
    meta["skipped"] = [{"clip_id": "cov_09_000", "where": "split.csv:9", "message": "missing",
                        "label": "class1", "test_fold": 1}]
    write_parquet(path, read_parquet(path), meta)
    table = load_clip_table(tmp_path, DS, Needs())
    account = table.account(1, "test")
    assert (account.listed, account.evaluated) == (3, 2)
    assert account.lost == {"manifest missing_file": 1}
    assert table.account(2, "test").listed == 2  # it belongs to fold 1 only
