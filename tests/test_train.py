"""Training data, Lightning fit, evaluation, zero-shot transfer, stages and ``dfer predict``.

Everything runs on synthetic artifacts in the exact on-disk layout (dfer.train.synthetic)
with a tiny random-init CLIP, so no weights are downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dfer.artifacts import read_meta
from dfer.cli import main as cli_main
from dfer.model.checkpoint import read_checkpoint
from dfer.train.data import ClipDataset, DataConfig, Needs, collate, fold_split, load_clip_table
from dfer.train.evaluate import evaluate_checkpoint
from dfer.train.fit import train_fold
from dfer.train.synthetic import simple_renderers, write_synthetic_dataset

FAILED = {"landmarks": ["syn_00_000", "syn_02_003"], "parsing": ["syn_01_001"], "frames": ["syn_03_002"]}
ALL = Needs(parsing=True, landmarks=True, captions=True)


def run_params(epochs: int = 2, **model) -> dict:
    return {
        "model": {"backbone": "tiny", "pretrained": None, **model},
        "data": {"batch_size": 8, "num_workers": 0, "num_frames": 4},
        "optim": {"lr": 1e-2},
        "trainer": {"max_epochs": epochs, "seed": 0, "log_every_n_steps": 1},
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_synthetic_dataset(root, "syn", num_classes=5, clips_per_class=6, frames=6, size=32, failed=FAILED)
    return root


@pytest.fixture(scope="module")
def trained(results: Path) -> Path:
    out = results / "syn" / "train" / "t" / "fold-1"
    train_fold(results, "syn", 1, "t", {**run_params(), "dataset": "syn"}, out, renderers=simple_renderers())
    return out


def test_clip_table_skips_clips_that_failed_upstream(results: Path) -> None:
    table = load_clip_table(results, "syn", ALL)
    ids = set(table.clips["clip_id"])
    assert len(table.clips) == 30 - 4
    assert not ids & {c for v in FAILED.values() for c in v}
    assert table.skipped == {"landmarks": 2, "parsing": 1}  # decode failures are absent upstream
    assert table.has_captions and table.labels == [f"class{c}" for c in range(5)]
    assert table.num_folds == 2
    # a model without the middle level does not lose the clips that failed there
    video_only = load_clip_table(results, "syn", Needs())
    assert len(video_only.clips) == 29 and video_only.skipped == {}


def test_dataset_items_and_collate(results: Path) -> None:
    table = load_clip_table(results, "syn", ALL)
    test = fold_split(table.clips, 1, "test")
    assert set(test["test_fold"]) == {1}
    assert set(fold_split(table.clips, 1, "train")["test_fold"]) == {2}
    cfg = DataConfig(num_frames=3, mid_frames=2, num_workers=0)
    ds = ClipDataset(results, "syn", test, table, ALL, cfg, 48, train=False, renderers=simple_renderers())
    item = ds[0]
    assert item["frames"].shape == (3, 48, 48, 3) and item["frames"].dtype == torch.uint8
    assert item["landmarks"].shape == item["parsing"].shape == (2, 48, 48, 3)
    assert item["caption"].startswith("A bright square moves")
    assert item["label"] == int(test.loc[0, "label_idx"]) and item["clip_id"] == test.loc[0, "clip_id"]
    batch = collate([ds[i] for i in range(3)])
    assert batch["frames"].shape == (3, 3, 48, 48, 3) and batch["label"].shape == (3,)
    assert len(batch["captions"]) == 3


def test_training_flips_are_seeded_per_epoch(results: Path) -> None:
    table = load_clip_table(results, "syn", Needs())
    cfg = DataConfig(num_workers=0, flip=True)
    plain = ClipDataset(results, "syn", table.clips, table, Needs(), cfg, 32, train=False)[0]["frames"]
    ds = ClipDataset(results, "syn", table.clips, table, Needs(), cfg, 32, train=True, seed=3)
    seen = []
    for epoch in range(8):
        ds.epoch = epoch
        frames = ds[0]["frames"]
        assert torch.equal(frames, ds[0]["frames"])  # same (seed, epoch, clip): same item
        flipped = torch.equal(frames, plain.flip(2))
        assert flipped or torch.equal(frames, plain)
        seen.append(flipped)
    assert any(seen) and not all(seen)


def test_captions_are_optional(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, "nocap", num_classes=2, clips_per_class=2, num_shards=2)
    (tmp_path / "nocap" / "captions" / "shard-001.parquet").unlink()
    table = load_clip_table(tmp_path, "nocap", ALL)
    assert not table.has_captions and len(table.clips) == 4
    ds = ClipDataset(tmp_path, "nocap", table.clips, table, ALL, DataConfig(), 32, False,
                     renderers=simple_renderers())
    assert "caption" not in ds[0]


def test_fit_writes_tunable_checkpoint_and_logs(trained: Path) -> None:
    state, meta = read_checkpoint(trained / "checkpoint.safetensors")
    assert state and all(not k.startswith("clip.") for k in state)
    assert meta["dataset"] == "syn" and meta["fold"] == 1 and meta["num_train_clips"] == 13
    assert meta["preprocessing"]["decode"] == {}  # synthetic frames carry no decode params
    summary = json.loads((trained / "train.json").read_text())
    assert summary["epochs"] == 2 and summary["parameters"]["tunable_total"] == sum(t.numel() for t in state.values())
    logged = pd.read_csv(trained / "logs" / "metrics.csv")
    assert "train/loss_step" in logged.columns and logged["train/loss_step"].notna().sum() == 4
    assert "val/uar" in logged.columns


def test_evaluate_writes_metrics_predictions_and_plot(results: Path, trained: Path) -> None:
    metrics = evaluate_checkpoint(trained / "checkpoint.safetensors", results, "syn", 1, trained,
                                  renderers=simple_renderers())
    on_disk = json.loads((trained / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    preds = pd.read_parquet(trained / "predictions.parquet")
    table = load_clip_table(results, "syn", ALL)
    assert sorted(preds["clip_id"]) == sorted(fold_split(table.clips, 1, "test")["clip_id"])
    assert np.allclose(np.stack(preds["probs"]).sum(1), 1.0, atol=1e-5)
    assert (preds["correct"] == (preds["pred_idx"] == preds["label_idx"])).all()
    war = preds["correct"].mean()
    # the reloaded checkpoint (adapters + re-created backbone) reproduces the last validation
    final = json.loads((trained / "train.json").read_text())["final_metrics"]
    assert metrics["uar"] == pytest.approx(final["val/uar"], abs=1e-6)
    assert metrics["war"] == pytest.approx(final["val/war"], abs=1e-6)
    assert metrics["war"] == pytest.approx(war) and not metrics["zero_shot"]
    assert metrics["num_clips"] == len(preds) and metrics["run"] == "t"
    assert read_meta(trained / "predictions.parquet")["stage"] == "evaluate"
    assert (trained / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_zero_shot_on_a_dataset_with_other_labels(tmp_path: Path, trained: Path) -> None:
    # target dataset: 3 classes, two of which share names with the source's classes
    write_synthetic_dataset(tmp_path, "other", num_classes=3, clips_per_class=3, num_folds=1, seed=5)
    out = tmp_path / "zs"
    metrics = evaluate_checkpoint(trained / "checkpoint.safetensors", tmp_path, "other", 1, out,
                                  split="all", renderers=simple_renderers(),
                                  label_prompts={"class2": "class4"})
    assert metrics["zero_shot"] and metrics["trained_on"] == "syn" and metrics["dataset"] == "other"
    assert metrics["labels"] == ["class0", "class1", "class2"] and metrics["num_clips"] == 9
    preds = pd.read_parquet(out / "predictions.parquet")
    assert len(preds) == 9 and all(len(p) == 3 for p in preds["probs"])
    assert set(preds["pred_label"]) <= {"class0", "class1", "class2"}
    assert read_meta(out / "predictions.parquet")["params"]["label_prompts"] == {"class2": "class4"}


def test_training_is_deterministic(tmp_path: Path, results: Path, trained: Path) -> None:
    out = tmp_path / "again"
    train_fold(results, "syn", 1, "t", {**run_params(), "dataset": "syn"}, out, renderers=simple_renderers())
    a, _ = read_checkpoint(trained / "checkpoint.safetensors")
    b, _ = read_checkpoint(out / "checkpoint.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_train_evaluate_summarize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dfer.train.data as data_mod

    monkeypatch.setattr(data_mod, "default_renderers", simple_renderers)
    write_synthetic_dataset(tmp_path, "cli", num_classes=3, clips_per_class=2, frames=4)
    params = json.dumps({**run_params(epochs=1, use_parsing=False), "datasets": ["cli"], "folds": None})
    metrics = []
    for k in (1, 2):
        out = tmp_path / "cli" / "train" / "r" / f"fold-{k}"
        assert cli_main(["train", "--results", str(tmp_path), "--dataset", "cli", "--fold", str(k),
                         "--run", "r", "--out", str(out), "--params", params]) == 0
        assert cli_main(["evaluate", "--checkpoint", str(out / "checkpoint.safetensors"), "--results",
                         str(tmp_path), "--dataset", "cli", "--fold", str(k), "--out", str(out),
                         "--params", '{"device": "cpu"}']) == 0
        metrics.append(out / "metrics.json")
    summary_path = tmp_path / "cli" / "train" / "r" / "summary.json"
    assert cli_main(["evaluate", "--summarize", *map(str, metrics), "--out", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    folds = [json.loads(p.read_text()) for p in metrics]
    assert summary["uar"] == pytest.approx(np.mean([f["uar"] for f in folds]))
    assert summary["run"] == "r" and summary["num_folds"] == 2 and summary["num_clips"] == 6
    assert cli_main(["evaluate", "--out", str(tmp_path / "x"), "--params", "{}"]) == 2


def test_predict_runs_the_trained_preprocessing_on_videos(tmp_path: Path, trained: Path, capsys) -> None:
    """``dfer predict``: decode crop, dlib landmarks and polygon parsing in memory, then the model."""
    from dfer.train.predict import predict_videos
    from dfer.video.synth import face_frames, write_video

    video = write_video(tmp_path / "face.mp4", face_frames(12, size=160))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    pre = {"decode": {"num_frames": 4, "size": 160}, "landmarks": {"backend": "dlib"},
           "parsing": {"backend": "landmarks"}}
    preds = predict_videos(trained / "checkpoint.safetensors", [video, broken], device="cpu",
                           preprocessing=pre)
    ok, bad = preds
    assert ok.error is None and ok.labels == [f"class{c}" for c in range(5)]
    assert ok.probs.shape == (5,) and ok.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert ok.top(2)[0][1] >= ok.top(2)[1][1]
    assert bad.probs is None and bad.error
    # the CLI prints one line per video and fails (1) because one video could not be read
    ckpt = str(trained / "checkpoint.safetensors")
    code = cli_main(["predict", "--checkpoint", ckpt, "--device", "cpu", "--json",
                     "--preprocessing", json.dumps(pre), str(video), str(broken)])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 1 and lines[0]["path"] == str(video) and "error" in lines[1]
    assert lines[0]["probs"] == pytest.approx({lab: float(p) for lab, p in zip(ok.labels, ok.probs, strict=True)}, abs=1e-5)


@pytest.mark.slow
def test_adapters_learn_the_synthetic_classes(tmp_path: Path) -> None:
    """With a random frozen backbone, the adapters alone lift held-out UAR well above chance."""
    write_synthetic_dataset(tmp_path, "learn", num_classes=5, clips_per_class=8, frames=8, size=32)
    params = run_params(epochs=60)
    params["data"].update(batch_size=20, num_frames=None, flip=False)
    params["trainer"].update(gradient_clip_val=None, log_every_n_steps=10)
    out = tmp_path / "learn" / "train" / "r" / "fold-1"
    ckpt = train_fold(tmp_path, "learn", 1, "r", {**params, "dataset": "learn"}, out, renderers=simple_renderers())
    metrics = evaluate_checkpoint(ckpt, tmp_path, "learn", 1, out, renderers=simple_renderers())
    assert metrics["num_clips"] == 20
    assert metrics["uar"] > 0.4  # chance: 0.2
