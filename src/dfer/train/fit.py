"""Train one fold: build the run's method (dfer.methods.registry), fit with Lightning, save its checkpoint.

On one process or several (``trainer.devices`` x ``trainer.num_nodes``, Lightning's DDP): the
same global batches and gathered metrics (dfer.train.distributed), only global rank 0 writes
the fold's outputs. A fold killed or timed out resumes from its last finished epoch
(dfer.train.resume) when it is run again with the same config.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch

from dfer.core.artifacts import write_bytes_atomic
from dfer.core.clip_losses import (
    advice,
    class_loss_problems,
    lost_clips,
    lost_per_class,
    read_failures,
)
from dfer.core.paths import CHECKPOINT, RESUME, TRAIN_SUMMARY
from dfer.methods import api
from dfer.methods.checkpoint import save_checkpoint
from dfer.methods.registry import build_model
from dfer.train import resume
from dfer.train.config import DataConfig, RunConfig, lightning_devices
from dfer.train.data import ClipTable, Renderer, fold_split, preprocessing_params, read_clip_table
from dfer.train.distributed import cluster_environment
from dfer.train.inputs import DataInputs, needs_for
from dfer.train.module import DFERModule, FoldDataModule

log = logging.getLogger(__name__)

CHECKPOINT_NAME = CHECKPOINT  # the fold folder's files: names from dfer.core.paths
SUMMARY_NAME = TRAIN_SUMMARY


def _loggers(out: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(str(out), name="logs", version="")]
    try:
        import tensorboard  # noqa: F401 - only to check it is installed
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out), name="logs", version="tb"))
    except ImportError:
        pass
    return loggers


class ClassLossError(ValueError):
    """A fold's training set lacks a class, or a class lost too many clips upstream."""


def check_fold_classes(inputs: DataInputs, fold: int, labels: list[str],
                       table: ClipTable, data_cfg: DataConfig) -> dict[str, Any]:
    """Refuse (``data.class_loss: error``) or warn when a class is empty or thinned out.

    Training skips clips that an upstream stage failed, which is right for a stray clip and
    silently wrong when it empties a class: the model then never sees it. The split files'
    clips (the dataset manifest) are compared with the clips training can read, each lost
    clip charged to the stage that recorded it failed. Returns the numbers for train.json.
    """
    dataset = inputs.dataset
    if table.listed is not None and table.lost is not None:  # the table's own count, as logged
        manifest, lost = table.listed, table.lost
    else:
        manifest = pd.read_parquet(inputs.manifest, columns=["clip_id", "label", "test_fold"])
        lost = lost_clips(manifest, table.clips["clip_id"], failures=read_failures(inputs.failures))
    problems = class_loss_problems(labels, manifest, lost, fold, data_cfg.max_class_loss)
    lost_train = lost[lost["test_fold"] != fold]
    if problems:
        tips = advice(lost_train)
        text = (f"{dataset} fold {fold}: " + "; ".join(problems) + "."
                + (f" To keep these clips: {tips}." if tips else "")
                + f" Set data.class_loss: warn to train anyway (data.max_class_loss: "
                  f"{data_cfg.max_class_loss} is the share a class may lose).")
        if data_cfg.class_loss == "error":
            raise ClassLossError(text)
        log.warning("%s", text)
    return {"lost_training_clips": dict(lost_per_class(lost_train, labels)),
            "class_problems": problems}


def fit_trainer(cfg: RunConfig, out: Path, device: str, precision: str, has_val: bool,
                callbacks: list[Any] | None = None) -> L.Trainer:
    """The Lightning trainer of one fold: ``trainer.devices`` x ``num_nodes`` processes (DDP
    when more than one), validation on the test fold only when it has clips and is asked for,
    and the resume file of the last finished epoch (``{out}/resume.ckpt``); the fold's
    tunable-weights checkpoint is written by :func:`train_fold`, not Lightning."""
    from lightning.pytorch.strategies import DDPStrategy

    t = cfg.trainer
    accelerator, devices = lightning_devices(device, t.devices)
    environment = cluster_environment(t.devices, t.num_nodes)
    checkpoint_io = resume.AtomicCheckpointIO()
    if t.world_size > 1 or t.strategy == "ddp":
        # unused parameters: a batch without captions leaves the caption adapters without a
        # gradient, and DDP must then not wait for them
        strategy: Any = DDPStrategy(cluster_environment=environment, checkpoint_io=checkpoint_io,
                                    find_unused_parameters=True)
        plugins: list[Any] = []
    else:
        strategy, plugins = "auto", [environment, checkpoint_io]
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        plugins=plugins,
        precision=precision,
        max_epochs=t.max_epochs,
        logger=_loggers(out),
        callbacks=[resume.epoch_checkpoint(out), *(callbacks or [])],
        enable_checkpointing=True,  # the resume file; the fold's checkpoint is train_fold's
        enable_progress_bar=True,
        enable_model_summary=False,
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch if has_val else 1,
        limit_val_batches=None if has_val else 0,
        num_sanity_val_steps=0,
        gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=t.accumulate_grad_batches,
        limit_train_batches=t.limit_train_batches,
        deterministic="warn" if t.deterministic else False,
        use_distributed_sampler=False,  # FoldDataModule splits the global batches itself
        default_root_dir=str(out),
    )


def write_train_summary(path: Path, trainer: L.Trainer, model: torch.nn.Module, info: Mapping[str, Any],
                        losses: Mapping[str, Any], seconds: float, num_train: int,
                        backends: Mapping[str, Any], execution: Mapping[str, Any] | None = None) -> None:
    """``train.json``: the method, clip counts, final metrics, tunable parameter counts, speed, per
    stage the backend / model the artifacts were made with (and what ``auto`` chose, why), and
    how this job ran (``processes``; ``resumed_at_epoch``: the first epoch it trained, when it
    continued an interrupted run)."""
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    module = trainer.lightning_module
    final = {**getattr(module, "resumed_metrics", {}), **final}  # a run resumed after its last epoch
    epochs_run = trainer.current_epoch - int((execution or {}).get("resumed_at_epoch") or 0)
    summary = {
        **info,
        "method": module.spec.name,
        **losses,
        "epochs": trainer.current_epoch,
        "final_metrics": dict(sorted(final.items())),
        "parameters": api.count_parameters(model, module.spec),
        # the fold's training time over all its jobs (a resumed fold's earlier ones included);
        # the speed is this job's: its epochs over its seconds (None when it trained none)
        "seconds": getattr(module, "seconds_before", 0.0) + seconds,
        "seconds_this_job": seconds,
        "clips_per_second": num_train * epochs_run / seconds if seconds and epochs_run > 0 else None,
        "backends": backends,
        **(execution or {}),
    }
    write_bytes_atomic(path, json.dumps(summary, indent=2, sort_keys=True).encode())


def train_fold(
    results: str | Path,
    dataset: str,
    fold: int,
    run: str,
    params: Mapping[str, Any],
    out: str | Path,
    renderers: tuple[Renderer, Renderer] | None = None,
    table: ClipTable | None = None,
    inputs: DataInputs | None = None,
    callbacks: list[Any] | None = None,
) -> Path | None:
    """Fit the run's method on fold ``fold`` of ``dataset``; return the checkpoint path (None in
    the other processes of a multi-process run: only global rank 0 writes).

    Reads exactly ``inputs`` (``dfer train`` passes the rule's declared files); without them,
    the files :meth:`DataInputs.from_results` names under ``results``. ``table``: a clip table
    already read from those files (tests share one between runs).

    Writes ``{out}/checkpoint.safetensors`` (the method's weights + config), ``{out}/train.json``
    (clip counts, final metrics, tunable parameter counts, seconds, the preprocessing backends
    and what ``auto`` chose for them) and ``{out}/logs/``; while training, ``{out}/resume.ckpt``
    (the last finished epoch), from which a re-run with the same config continues.
    ``callbacks``: more Lightning callbacks (monitoring; tests stop a run with one).
    """
    cfg = RunConfig.from_dict(params)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    device = cfg.resolved_device()
    precision = cfg.resolved_precision()
    # exact fp32 matmuls on CPU (reproducible demo numbers); TF32 on GPUs, where it is the speed
    torch.set_float32_matmul_precision("highest" if device == "cpu" else "high")

    needs = needs_for(cfg.model)
    if table is None:
        table = read_clip_table(inputs or DataInputs.from_results(results, dataset, needs), needs,
                                one_frame_clips=cfg.data.one_frame_clips)
    assert table.inputs is not None
    inputs = table.inputs
    labels = table.labels
    model = build_model(cfg.spec, cfg.model, labels)
    data = FoldDataModule(table, fold, cfg, model.image_size, renderers=renderers)
    losses = check_fold_classes(inputs, fold, labels, table, cfg.data)
    train_clips = fold_split(table.clips, fold, "train")["clip_id"]
    test_clips = fold_split(table.clips, fold, "test")["clip_id"]
    num_test = len(test_clips)
    preprocessing = preprocessing_params(inputs, needs)
    digest = resume.run_digest(cfg, dataset=dataset, fold=fold, labels=labels, precision=precision,
                               train_clips=train_clips, test_clips=test_clips, preprocessing=preprocessing)
    has_val = cfg.trainer.check_val_every_n_epoch > 0 and num_test > 0
    with warnings.catch_warnings():
        # the fold folder holds logs and the resume file by design
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        trainer = fit_trainer(cfg, out, device, precision, has_val, callbacks)
        ckpt_path, next_epoch = resume.usable_resume(out, digest)
        # a resumed run first builds the optimiser stage of the epoch the resume file was saved
        # at (its optimiser state fits only that stage's groups); when the epoch it continues at
        # opens a new stage, on_train_epoch_start then enters it, as the uninterrupted run did
        module = DFERModule(model, cfg, digest=digest, spec=cfg.spec,
                            start_epoch=next_epoch - 1 if ckpt_path else 0)
        if ckpt_path is not None:
            log.info("%s fold %d: resuming at epoch %d from %s", dataset, fold, next_epoch, ckpt_path)
            for logger in trainer.loggers:
                if type(logger).__name__ == "CSVLogger":
                    resume.restore_csv_history(logger, out, next_epoch)
        start = time.perf_counter()
        trainer.fit(module, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
        seconds = time.perf_counter() - start
    if trainer.interrupted or trainer.current_epoch < cfg.trainer.max_epochs:
        raise RuntimeError(f"{dataset} fold {fold}: training stopped at epoch {trainer.current_epoch} of "
                           f"{cfg.trainer.max_epochs}; run it again to resume from {out / RESUME}")
    if not trainer.is_global_zero:
        return None
    assert data.train_set is not None
    info = {
        "dataset": dataset, "run": run, "fold": int(fold),
        "num_train_clips": len(data.train_set), "num_test_clips": num_test,
        "skipped_clips": table.skipped, "precision": precision, "device": device,
        "captions_used": table.has_captions,
        "label_order": table.label_order,  # whose class order the checkpoint's labels follow
        "training_clips": table.account(fold, "train").text("training clips").replace(
            "evaluated", "trained on", 1).replace("not scored", "left out", 1),
    }
    ckpt = save_checkpoint(out / CHECKPOINT_NAME, model, labels=labels, params=cfg.raw,
                           preprocessing=preprocessing, **info)
    write_train_summary(out / SUMMARY_NAME, trainer, model, info, losses, seconds,
                        len(data.train_set), table.backends,
                        {"processes": trainer.world_size, "resumed_at_epoch": next_epoch if ckpt_path else None})
    resume.finish(out)
    _wait_for_local_ranks(trainer)
    return ckpt


def _wait_for_local_ranks(trainer: L.Trainer, timeout: float = 120.0) -> None:
    """Let the processes Lightning started for the other local devices exit before the job
    does (they write nothing; a job whose children outlive it confuses schedulers)."""
    launcher = getattr(trainer.strategy, "launcher", None)
    for proc in getattr(launcher, "procs", []):
        try:
            proc.wait(timeout=timeout)
        except Exception as exc:  # a child that hangs must not fail a fold whose outputs are written
            log.warning("local rank process %s did not exit: %s", getattr(proc, "pid", "?"), exc)
