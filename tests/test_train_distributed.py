"""Training on several processes computes the single-process run; a killed fold resumes.

- The execution keys (``trainer.devices`` / ``strategy`` / ``num_nodes``) are validated, and are
  where-keys: they are not part of what a resume file must match.
- Batches: every process holds its slice of each global batch, padded with masked rows; the
  expected slices are written out by hand.
- Gradients: two real processes (gloo) computing their shares of one batch, averaged as DDP
  does, equal the gradient of the whole batch in one process (standardised features and the
  caption alignment included, which look at the whole batch).
- Lightning end to end: ``dfer train`` with 2 CPU processes gives the validation metrics of 1
  process and writes one checkpoint; a fold SIGKILLed after epoch 1 resumes at epoch 2 and
  writes the checkpoint of the uninterrupted run, bit for bit.

All on the CPU in float32 with the tiny random backbone.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.dataset import write_synthetic_dataset
from support.share_worker import batch_rows, image_batch, share_worker, tiny_model, train_step
from support.two_processes import run_in_two_processes

from dfer.core.paths import RESUME
from dfer.methods.checkpoint import read_checkpoint
from dfer.methods.fineclipper import FineCLIPER
from dfer.methods.specs.fineclipper import ModelConfig
from dfer.model.batch_share import BatchShare
from dfer.train import resume
from dfer.train.config import RunConfig, lightning_devices, result_params
from dfer.train.distributed import EpochOrder, RankBatches, RankSlices, rank_rows
from dfer.train.fit import train_fold

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3
KILLED_AT = 2  # the killed run dies as epoch 2 starts: epochs 0 and 1 are saved


def run_params(**trainer) -> dict:
    """Every level and the caption alignment on (the parts that look at the whole batch);
    15 training and 15 test clips in batches of 8: the last batch and the test set do not split
    evenly over 2 processes, so padding is exercised."""
    return {
        "dataset": "syn", "device": "cpu",
        "model": {"backbone": "tiny", "pretrained": None, "align_weight": 0.5},
        "data": {"batch_size": 8, "num_workers": 0, "num_frames": 2},
        "optim": {"lr": 3e-2},
        "trainer": {"max_epochs": EPOCHS, "seed": 0, "log_every_n_steps": 1, "precision": "32-true", **trainer},
    }


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


# --- config ------------------------------------------------------------------------------


@pytest.mark.parametrize(("trainer", "message"), [
    ({"devices": 0}, "trainer.devices must be a whole number >= 1, got 0"),
    ({"devices": "2"}, "trainer key 'devices'"),
    ({"devices": True}, "trainer key 'devices' must be an integer, got True"),
    ({"num_nodes": 0}, "trainer.num_nodes must be a whole number >= 1, got 0"),
    ({"strategy": "ddp_spawn"}, "trainer.strategy must be one of ['auto', 'ddp'], got 'ddp_spawn'"),
    ({"accelerator": "tpu"}, "trainer.accelerator must be auto, cpu or gpu, got 'tpu'"),
])
def test_execution_keys_are_validated(trainer: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        RunConfig.from_dict({"trainer": trainer})


def test_execution_keys_accepted_and_devices_read_as_lightning_does(monkeypatch) -> None:
    cfg = RunConfig.from_dict({"device": "cuda", "trainer": {"devices": 4, "num_nodes": 2, "strategy": "ddp"}})
    assert (cfg.trainer.devices, cfg.trainer.num_nodes, cfg.trainer.world_size) == (4, 2, 8)
    with pytest.raises(ValueError, match="device 'cuda:1' pins one GPU but trainer.devices x trainer.num_nodes is 2"):
        RunConfig.from_dict({"device": "cuda:1", "trainer": {"devices": 2}})
    # Lightning reads devices=1 as "the first GPU": cuda:N must reach it as [N]
    assert lightning_devices("cuda:3") == ("gpu", [3])
    assert lightning_devices("cuda", 4) == ("gpu", 4)
    assert lightning_devices("cpu", 2) == ("cpu", 2)
    # the same automatic precision on any GPU as evaluation uses (cuda:N trained in float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    for device in ("cuda", "cuda:1"):
        assert RunConfig.from_dict({"device": device}).resolved_precision() == "bf16-mixed"
    assert RunConfig.from_dict({"device": "cpu"}).resolved_precision() == "32-true"


def test_where_keys_leave_the_resume_digest_alone() -> None:
    def digest(params: dict) -> str:
        return resume.run_digest(RunConfig.from_dict(params), dataset="syn", fold=1, labels=["a", "b"],
                                 precision="32-true", train_clips=["x", "y"], test_clips=["z"], preprocessing={})
    base = run_params()
    moved = {**base, "device": "auto", "data": {**base["data"], "num_workers": 8, "eval_batch_size": 64},
             "trainer": {**base["trainer"], "devices": 8, "num_nodes": 2, "strategy": "ddp"}}
    assert result_params(moved) == result_params(base)
    assert digest(moved) == digest(base)
    other_lr = {**base, "optim": {"lr": 1e-3}}
    assert digest(other_lr) != digest(base)
    cfg = RunConfig.from_dict(base)
    other_clips = resume.run_digest(cfg, dataset="syn", fold=1, labels=["a", "b"], precision="32-true",
                                    train_clips=["x"], test_clips=["z"], preprocessing={})
    assert other_clips != digest(base)


# --- batches -----------------------------------------------------------------------------


def test_rank_rows_by_hand() -> None:
    # 7 clips over 2 processes: 4 rows each, the second padded with a masked repeat of clip 0
    clips = [5, 3, 9, 1, 0, 8, 2]
    assert rank_rows(clips, 0, 2) == [(5, True, 7), (3, True, 7), (9, True, 7), (1, True, 7)]
    assert rank_rows(clips, 1, 2) == [(0, True, 7), (8, True, 7), (2, True, 7), (5, False, 7)]
    # 1 clip over 3 processes: every process holds one row, two of them padding
    assert [rank_rows([4], r, 3) for r in range(3)] == [[(4, True, 1)], [(4, False, 1)], [(4, False, 1)]]
    assert rank_rows([], 0, 2) == []


def test_rank_batches_split_every_global_batch() -> None:
    order = EpochOrder(13, seed=0, shuffle=True)
    order.set_epoch(3)
    perm = order.order()
    assert sorted(perm) == list(range(13))
    alone = list(RankBatches(order, 8))
    assert [[i for i, _, _ in b] for b in alone] == [perm[:8], perm[8:]]
    for world in (2, 3):
        parts = [list(RankBatches(order, 8, rank, world)) for rank in range(world)]
        assert {len(p) for p in parts} == {2} and len(RankBatches(order, 8, 0, world)) == 2
        for b, want in enumerate((perm[:8], perm[8:])):
            assert len({len(p[b]) for p in parts}) == 1  # as many rows on every process
            rows = [row for p in parts for row in p[b]]
            assert [i for i, valid, _ in rows if valid] == want  # the batch, in order, once
            assert {n for _, _, n in rows} == {len(want)}
    # evaluation: contiguous slices of all clips, padded, in batches of 4 rows
    slices = [list(RankSlices(EpochOrder(13, 0, False), 4, rank, 2)) for rank in range(2)]
    assert [[i for i, _, _ in b] for b in slices[0]] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [[(i, v) for i, v, _ in b] for b in slices[1]] == [
        [(7, True), (8, True), (9, True), (10, True)], [(11, True), (12, True), (0, False)]]


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    a, b = EpochOrder(50, 0, True), EpochOrder(50, 0, True)
    for epoch in range(4):  # a walks through the epochs, b jumps to the last one
        a.set_epoch(epoch)
        first = a.order()
    b.set_epoch(3)
    assert first == b.order() == list(b)
    b.set_epoch(2)
    assert b.order() != first
    assert EpochOrder(50, 1, True).order() != EpochOrder(50, 0, True).order()
    assert EpochOrder(5, 0, False).order() == [0, 1, 2, 3, 4]


# --- gradients of a batch split over processes ------------------------------------------

def _close(got: np.ndarray | torch.Tensor, want: torch.Tensor, rel: float) -> float:
    """Largest difference relative to the largest magnitude of ``want``."""
    return float((torch.as_tensor(got) - want).abs().max() / want.abs().max().clamp_min(1e-30)) if want.numel() else 0.0


def test_two_processes_compute_the_gradient_of_the_whole_batch() -> None:
    shared = run_in_two_processes(share_worker)
    batch = image_batch()
    for standardize in (True, False):
        whole = train_step(tiny_model(standardize), batch, None)
        got = shared[standardize]
        assert set(got["losses"]) == set(whole["losses"]) == {"ce", "align", "loss"}
        for name, value in whole["losses"].items():
            assert got["losses"][name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
        assert set(got["grads"]) == set(whole["grads"])
        # float32 reduction order; standardised features divide by a batch std that is small
        # next to their mean (a random backbone), which magnifies rounding ~30x
        rel = 1e-3 if standardize else 2e-5
        worst = max(_close(got["grads"][k], g, rel) for k, g in whole["grads"].items())
        assert worst < rel, (standardize, worst)
        for name, buf in whole["buffers"].items():
            np.testing.assert_allclose(got["buffers"][name], buf.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
        assert bool(whole["buffers"]) is standardize


def test_padding_rows_count_nowhere() -> None:
    """One process, the batch padded with two masked repeats: the share path gives the plain
    batch's losses and gradients (the masking, without collectives)."""
    batch = image_batch()
    n = len(batch["label"])
    padded = batch_rows(batch, list(range(n)) + [0, 3])
    share = BatchShare(torch.tensor([True] * n + [False, False]), n, world=1, rank=0)
    for standardize in (True, False):
        model = tiny_model(standardize)
        whole, got = train_step(copy.deepcopy(model), batch, None), train_step(model, padded, share)
        for name, value in whole["losses"].items():
            assert got["losses"][name] == pytest.approx(value, rel=1e-6), name
        rel = 1e-3 if standardize else 2e-5
        assert max(_close(got["grads"][k], g, rel) for k, g in whole["grads"].items()) < rel
        for name, buf in whole["buffers"].items():
            torch.testing.assert_close(got["buffers"][name], buf, rtol=1e-5, atol=1e-6)


# --- Lightning end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    write_synthetic_dataset(root, "syn", num_classes=5, clips_per_class=6, frames=4, size=32, num_shards=1)
    return root


@pytest.fixture(scope="module")
def one_process(results: Path) -> Path:
    """The reference: one process, never interrupted."""
    out = results / "one"
    train_fold(results, "syn", 1, "t", run_params(), out)
    return out


def test_two_processes_match_one_and_write_once(results: Path, one_process: Path) -> None:
    out = results / "two"
    proc = subprocess.run(
        [sys.executable, "-m", "dfer", "train", "--results", str(results), "--dataset", "syn", "--fold", "1",
         "--run", "t", "--out", str(out), "--params", json.dumps(run_params(devices=2))],
        env=env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # rank 0 alone writes and reports: one summary line, the fold's files once, no resume file left
    assert sum(line.startswith("train syn t fold 1:") for line in proc.stderr.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.safetensors", "logs", "train.json"]
    two, one = (json.loads((d / "train.json").read_text()) for d in (out, one_process))
    assert two["processes"] == 2 and one["processes"] == 1
    assert two["num_train_clips"] == one["num_train_clips"] == 15 and two["num_test_clips"] == 15
    # validation over all 15 test clips of both processes (padding dropped): the same figures
    for key in ("val/uar", "val/war"):
        assert two["final_metrics"][key] == one["final_metrics"][key], key
    assert one["final_metrics"]["val/war"] > 0.2  # above chance (5 classes): predictions differ
    for key in ("val/loss", "train/loss_epoch", "train/ce_epoch", "train/align_epoch", "train/acc"):
        assert two["final_metrics"][key] == pytest.approx(one["final_metrics"][key], rel=2e-5), key
    a, b = tensors(out / "checkpoint.safetensors"), tensors(one_process / "checkpoint.safetensors")
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-4, msg=name)
    # the CSV log is rank 0's: one row per optimizer step (2 per epoch), not one per process
    logged = pd.read_csv(out / "logs" / "metrics.csv")
    assert logged["train/loss_step"].notna().sum() == 2 * EPOCHS
    assert sorted(logged.dropna(subset=["val/uar"])["epoch"]) == list(range(EPOCHS))


@pytest.fixture(scope="module")
def killed(results: Path) -> Path:
    """A fold SIGKILLed as epoch KILLED_AT starts (a real kill, in a subprocess)."""
    out = results / "killed"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "kill_training.py"), str(results), "syn", str(out),
         json.dumps(run_params()), str(KILLED_AT)],
        env=env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == -9, proc.stderr[-4000:]
    assert not (out / "checkpoint.safetensors").exists() and (out / RESUME).is_file()
    return out


def test_killed_fold_resumes_and_matches_the_uninterrupted_run(results: Path, killed: Path,
                                                              one_process: Path) -> None:
    out = results / "resumed"
    shutil.copytree(killed, out)
    saved = torch.load(out / RESUME, weights_only=True)
    assert saved["epoch"] == KILLED_AT - 1  # the last finished epoch
    train_fold(results, "syn", 1, "t", run_params(), out)
    summary = json.loads((out / "train.json").read_text())
    assert summary["resumed_at_epoch"] == KILLED_AT and summary["epochs"] == EPOCHS
    assert not (out / RESUME).exists()  # removed once the fold's outputs are written
    # the same weights and feature statistics, bit for bit, and the same metadata
    a, b = tensors(out / "checkpoint.safetensors"), tensors(one_process / "checkpoint.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert read_checkpoint(out / "checkpoint.safetensors")[1] == read_checkpoint(one_process / "checkpoint.safetensors")[1]
    assert summary["final_metrics"] == json.loads((one_process / "train.json").read_text())["final_metrics"]
    # the log covers every epoch once: the killed run's epochs 0-1 and this run's epoch 2
    logged = pd.read_csv(out / "logs" / "metrics.csv")
    assert sorted(logged.dropna(subset=["val/uar"])["epoch"]) == list(range(EPOCHS))
    assert logged["train/loss_step"].notna().sum() == 2 * EPOCHS


def test_resume_file_holds_the_tunable_state_only(killed: Path) -> None:
    saved = torch.load(killed / RESUME, weights_only=True)
    model = FineCLIPER(ModelConfig.from_dict(run_params()["model"]), [f"class{c}" for c in range(5)])
    tunable = model.tunable_state()
    assert set(saved["state_dict"]) == {f"model.{k}" for k in tunable}  # no frozen backbone
    [opt] = saved["optimizer_states"]
    moments = [s for s in opt["state"].values()]
    assert len(moments) == len(model.tunable_parameters())
    assert all(set(s) >= {"exp_avg", "exp_avg_sq", "step"} for s in moments)
    assert saved["lr_schedulers"][0]["last_epoch"] == saved["global_step"] == 2 * KILLED_AT
    # weights + AdamW's two moments, float32; the rest (loop state, names) is small
    floats = 3 * 4 * sum(t.numel() for t in tunable.values())
    assert floats < (killed / RESUME).stat().st_size < floats + 256 * 1024


def test_resume_file_of_another_run_is_not_used(killed: Path, tmp_path: Path, caplog) -> None:
    saved = torch.load(killed / RESUME, weights_only=True)
    digest = saved[resume.CHECKPOINT_KEY]["digest"]
    assert resume.usable_resume(killed, digest) == (killed / RESUME, KILLED_AT)
    assert resume.usable_resume(killed, "0" * 64) == (None, 0)
    assert "another config, other clips or other preprocessing" in caplog.text
    torn = tmp_path / RESUME
    torn.write_bytes((killed / RESUME).read_bytes()[:1000])  # never happens (atomic writes), but
    assert resume.usable_resume(tmp_path, digest) == (None, 0)
    assert "cannot be read" in caplog.text


def test_who_starts_the_processes(monkeypatch) -> None:
    from lightning.pytorch.plugins.environments import (
        LightningEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    from dfer.train.distributed import cluster_environment

    for key in [k for k in os.environ if k.startswith(("SLURM_", "TORCHELASTIC_"))] + ["GROUP_RANK", "LOCAL_WORLD_SIZE"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no srun binary: SLURMEnvironment does not warn
    assert type(cluster_environment(4, 1)) is LightningEnvironment  # a plain machine: Lightning starts them
    # a SLURM job's batch step (one process, whatever --ntasks says): Lightning starts the others
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert type(cluster_environment(2, 1)) is LightningEnvironment
    with pytest.raises(RuntimeError, match=r"trainer.num_nodes: 2 needs one process per device started on every node"):
        cluster_environment(2, 2)
    # srun started one task per device on 2 nodes: SLURM's ranks, without Lightning's requeue
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    env = cluster_environment(4, 2)
    assert type(env) is SLURMEnvironment and env.auto_requeue is False
    with pytest.raises(RuntimeError, match=r"this srun step has 8 tasks"):
        cluster_environment(2, 3)
    for key in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_STEP_NUM_TASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "8", "GROUP_RANK": "0",
                       "MASTER_ADDR": "n0", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)
    assert type(cluster_environment(4, 2)) is TorchElasticEnvironment
