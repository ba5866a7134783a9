"""DFER-CLIP and CLIPER through the one trainer: fit, stage switch, resume, DDP, evaluation.

Tiny random-init CLIPs on the synthetic artifacts (tests/support/dataset.py) with expression
names as classes (DFER-CLIP's class text is its descriptors); CPU, float32. The stage switch is
watched in a real Lightning fit; the resumed run is compared bit for bit with the uninterrupted
one; the gathered loss of a batch split over two processes with the whole batch's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from support.dataset import write_synthetic_dataset
from support.method_share_worker import METHODS, image_batch, share_worker, train_step
from support.two_processes import run_in_two_processes

from dfer.core.paths import RESUME
from dfer.methods.checkpoint import load_checkpoint, read_checkpoint
from dfer.train.config import DataConfig
from dfer.train.data import ClipDataset, fold_split, load_clip_table
from dfer.train.evaluate import evaluate_checkpoint
from dfer.train.fit import train_fold
from dfer.train.inputs import needs_for
from dfer.train.resume import CHECKPOINT_KEY

REPO = Path(__file__).resolve().parents[1]
LABELS = ["happiness", "sadness", "neutral", "anger", "surprise"]
TINY = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
EPOCHS = 4


def run_params(method: str, **trainer) -> dict:
    model = {"method": method, "backbone": "custom", "pretrained": None, "model_cfg": TINY}
    if method == "dferclip":
        model.update(temporal_heads=2, temporal_head_dim=16, temporal_mlp_dim=64, max_frames=4)
    return {
        "device": "cpu", "model": model,
        # 6 stored frames, 4 picked: DFER-CLIP's segment rule has a choice to make
        "data": {"batch_size": 8, "num_workers": 0, "num_frames": 4},
        "trainer": {"max_epochs": EPOCHS, "seed": 0, "log_every_n_steps": 1, "precision": "32-true", **trainer},
    }


def env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("methods")
    write_synthetic_dataset(root, "syn", num_classes=5, clips_per_class=4, frames=6, size=32, num_shards=1,
                            labels=LABELS)
    return root


class Watch(L.Callback):
    """At each epoch's first batch: the optimiser's groups and rates, which parameters need a
    gradient; at each epoch's end: a copy of the descriptors and of one image-tower weight."""

    def __init__(self) -> None:
        self.groups: list[list[tuple[str, float]]] = []
        self.grad_on: list[tuple[bool, bool]] = []
        self.snapshots: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == 0:
            [opt] = trainer.optimizers
            self.groups.append([(g["name"], g["lr"]) for g in opt.param_groups])
            model = module.model
            self.grad_on.append((model.descriptors.requires_grad, model.clip.visual.proj.requires_grad))

    def on_train_epoch_end(self, trainer, module) -> None:
        model = module.model
        self.snapshots.append((model.descriptors.detach().clone(), model.clip.visual.proj.detach().clone()))


@pytest.fixture(scope="module")
def cliper_run(results: Path) -> tuple[Path, Watch]:
    watch = Watch()
    out = results / "cliper"
    train_fold(results, "syn", 1, "cliper", run_params("cliper"), out, callbacks=[watch])
    return out, watch


def test_cliper_trains_descriptors_then_the_image_tower(results: Path, cliper_run) -> None:
    """Epochs 0-1: only the descriptors move, at lr 1e-2; from epoch 2 a new optimiser moves
    only the image tower, at 5e-6, then 5e-6 (1 + cos(pi / 10)) / 2 (warm restarts, T0 = 10)."""
    out, watch = cliper_run
    assert watch.groups == [[("descriptors", 1e-2)]] * 2 + [
        [("image", pytest.approx(5e-6))], [("image", pytest.approx(5e-6 * (1 + np.cos(np.pi / 10)) / 2))]]
    assert watch.grad_on == [(True, False), (True, False), (False, True), (False, True)]
    initial = load_checkpoint(out / "checkpoint.safetensors")[0]  # only for shapes
    assert initial.descriptors.shape == watch.snapshots[0][0].shape
    (d0, v0), (d1, v1), (d2, v2), (d3, v3) = watch.snapshots
    assert not torch.equal(d0, d1) and torch.equal(v0, v1)  # stage 1: descriptors move, tower frozen
    assert torch.equal(d1, d2) and torch.equal(d2, d3)  # stage 2: descriptors frozen
    assert not torch.equal(v1, v2) and not torch.equal(v2, v3)  # ... the tower moves
    summary = json.loads((out / "train.json").read_text())
    assert summary["method"] == "cliper" and summary["epochs"] == EPOCHS
    assert set(summary["parameters"]) == {"descriptors", "image", "temporal", "tunable_total", "frozen"}
    # its checkpoint holds the tuned tower (policy full): loaded, it is the trained model
    state, meta = read_checkpoint(out / "checkpoint.safetensors")
    assert meta["method"] == "cliper" and torch.equal(state["clip.visual.proj"], v3)
    assert torch.equal(state["descriptors"], d3)


@pytest.mark.parametrize("kill_at", [2, 3])
def test_cliper_killed_in_stage_2_resumes_into_stage_2(results: Path, cliper_run, kill_at: int) -> None:
    """Killed as epoch 3 starts (the resume file holds stage 2's optimiser) or as epoch 2 starts
    (the first of stage 2: the file holds stage 1's optimiser, the descriptors' group), the fold
    continues with stage 2's optimiser and ends with the uninterrupted run's weights, bit for
    bit."""
    out = results / f"cliper_killed_{kill_at}"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "kill_training.py"), str(results), "syn", str(out),
         json.dumps(run_params("cliper")), str(kill_at)],
        env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    saved = torch.load(out / RESUME, weights_only=True)
    [group] = saved["optimizer_states"][0]["param_groups"]
    assert saved["epoch"] == kill_at - 1 and group["lr"] == pytest.approx(
        1e-2 if kill_at == 2 else 5e-6 * (1 + np.cos(np.pi / 10)) / 2)  # stage 1 / stage 2 after one epoch
    before = saved[CHECKPOINT_KEY]["seconds"]  # the killed job's training seconds
    assert before > 0
    train_fold(results, "syn", 1, "cliper", run_params("cliper"), out)
    summary = json.loads((out / "train.json").read_text())
    assert summary["resumed_at_epoch"] == kill_at
    # the fold's training time is both jobs', the speed this job's (its epochs, its seconds)
    assert summary["seconds"] == pytest.approx(before + summary["seconds_this_job"])
    assert summary["clips_per_second"] == pytest.approx(
        summary["num_train_clips"] * (EPOCHS - kill_at) / summary["seconds_this_job"])
    a, b = read_checkpoint(out / "checkpoint.safetensors")[0], read_checkpoint(cliper_run[0] / "checkpoint.safetensors")[0]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_dferclip_fit_and_evaluation(results: Path, tmp_path: Path) -> None:
    """SGD with its three rates; evaluation scores the segment-centre frames, as an independent
    clip-by-clip forward pass of the checkpoint does."""
    out = results / "dferclip"
    ckpt = train_fold(results, "syn", 1, "dferclip", run_params("dferclip", max_epochs=2), out)
    summary = json.loads((out / "train.json").read_text())
    assert summary["method"] == "dferclip" and summary["parameters"]["prompts"] == 5 * 8 * 32
    metrics = evaluate_checkpoint(ckpt, results, "syn", 1, tmp_path / "eval", device="cpu")
    assert metrics["method"] == "dferclip"
    model, meta = load_checkpoint(ckpt)
    needs = needs_for(model.cfg)
    table = load_clip_table(results, "syn", needs)
    dcfg = DataConfig.for_method("dferclip", meta["params"]["data"])
    assert dcfg.test_sampler == "segment_centre"
    ds = ClipDataset("syn", fold_split(table.clips, 1, "test"), table, needs, dcfg, model.image_size, train=False)
    import pandas as pd

    preds = pd.read_parquet(tmp_path / "eval" / "predictions.parquet")
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            want = model.eval()(item["frames"][None]).probabilities()[0].numpy()
            got = np.asarray(preds.set_index("clip_id").loc[item["clip_id"], "probs"])
            np.testing.assert_allclose(got, want, atol=1e-5)
    # the segment-centre frames of the 6 stored ones: floor((k + 0.5) * 6 / 4) = 0, 2, 3, 5
    raw = ds.reader.tensor("frames", str(ds.clips.iloc[0]["shard"]), str(ds.clips.iloc[0]["clip_id"]))
    assert torch.equal(ds[0]["frames"], torch.from_numpy(np.ascontiguousarray(raw[[0, 2, 3, 5]])))


def test_two_processes_give_the_whole_batchs_loss_and_gradient() -> None:
    """The trainer gathers DFER-CLIP's logits, CLIPER's similarities and S2D's logits and head
    features over the global batch (padding dropped); each process's backward, averaged as DDP
    does, is the whole batch's gradient, CLIPER's in-batch sub-descriptor counts and S2D's
    self-distillation loss included; after the step both processes hold S2D's class queues of
    one process fed the whole batch (in batch order: the queues keep the last 2 of each class)."""
    shared = run_in_two_processes(share_worker)
    batch = image_batch()
    for method in METHODS:
        whole = train_step(method, batch, None)
        got = shared[method]
        assert set(got["buffers"]) == set(whole["buffers"])
        for name, want in whole["buffers"].items():
            for rank, have in enumerate(got["buffers"][name]):
                np.testing.assert_allclose(have, want.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"{name} rank {rank}")
        assert set(got["losses"]) == set(whole["losses"])
        for name, value in whole["losses"].items():
            assert got["losses"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), (method, name)
        assert set(got["grads"]) == set(whole["grads"])
        for name, g in whole["grads"].items():
            scale = float(g.abs().max().clamp_min(1e-12))
            assert float((torch.as_tensor(got["grads"][name]) - g).abs().max()) / scale < 1e-4, (method, name)
    s2d = shared["s2d"]
    assert set(s2d["buffers"]) == {"sdl.queue", "sdl.probe"} and s2d["losses"]["sdl"] > 0


@pytest.mark.slow
def test_cliper_on_two_processes_matches_one(results: Path, cliper_run) -> None:
    """Lightning's DDP on 2 CPU processes, across the stage switch: the same weights as one
    process (to float reduction order)."""
    out = results / "cliper_two"
    proc = subprocess.run(
        [sys.executable, "-m", "dfer", "train", "--results", str(results), "--dataset", "syn", "--fold", "1",
         "--run", "cliper", "--out", str(out), "--params", json.dumps(run_params("cliper", devices=2, accelerator="cpu"))],
        env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    a, b = read_checkpoint(out / "checkpoint.safetensors")[0], read_checkpoint(cliper_run[0] / "checkpoint.safetensors")[0]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert json.loads((out / "train.json").read_text())["processes"] == 2


@pytest.mark.slow  # the stage-2 resume above already needs the tuned tower back, bit for bit
def test_resume_file_of_a_full_checkpoint_method(results: Path, cliper_run) -> None:
    """The resume file of a method that tunes its backbone holds its whole state (the tuned
    tower): what the fold's checkpoint holds."""
    out = results / "cliper_keep"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "kill_training.py"), str(results), "syn", str(out),
         json.dumps(run_params("cliper")), "1"],
        env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    saved = torch.load(out / RESUME, weights_only=True)
    model, _ = load_checkpoint(cliper_run[0] / "checkpoint.safetensors")
    assert set(saved["state_dict"]) == {f"model.{k}" for k in model.state_dict()}
