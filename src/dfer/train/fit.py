"""Train one fold: build the model, fit with Lightning, save the tunable-weights checkpoint."""

from __future__ import annotations

import json
import logging
import time
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
from dfer.core.paths import CHECKPOINT, TRAIN_SUMMARY
from dfer.model.checkpoint import save_checkpoint
from dfer.model.fineclip import FineCLIPER, count_parameters
from dfer.train.config import DataConfig, RunConfig
from dfer.train.data import ClipTable, Renderer, fold_split, preprocessing_params, read_clip_table
from dfer.train.inputs import DataInputs, needs_for
from dfer.train.module import FineCLIPERModule, FoldDataModule

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


def fit_trainer(cfg: RunConfig, out: Path, device: str, precision: str, has_val: bool) -> L.Trainer:
    """The Lightning trainer of one fold: tunable-weights checkpoints are saved by us (not
    Lightning), validation on the test fold only when it has clips and is asked for."""
    t = cfg.trainer
    return L.Trainer(
        accelerator="gpu" if device.startswith("cuda") else "cpu",
        devices=1,
        precision=precision,
        max_epochs=t.max_epochs,
        logger=_loggers(out),
        enable_checkpointing=False,  # checkpoints hold only tunable weights: saved by train_fold
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
        default_root_dir=str(out),
    )


def write_train_summary(path: Path, trainer: L.Trainer, model: FineCLIPER, info: Mapping[str, Any],
                        losses: Mapping[str, Any], seconds: float, num_train: int,
                        backends: Mapping[str, Any]) -> None:
    """``train.json``: clip counts, final metrics, tunable parameter counts, speed, and per
    stage the backend / model the artifacts were made with (and what ``auto`` chose, why)."""
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    summary = {
        **info,
        **losses,
        "epochs": trainer.current_epoch,
        "final_metrics": dict(sorted(final.items())),
        "parameters": count_parameters(model),
        "seconds": seconds,
        "clips_per_second": num_train * trainer.current_epoch / seconds if seconds else None,
        "backends": backends,
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
) -> Path:
    """Fit FineCLIPER on fold ``fold`` of ``dataset``; return the checkpoint path.

    Reads exactly ``inputs`` (``dfer train`` passes the rule's declared files); without them,
    the files :meth:`DataInputs.from_results` names under ``results``. ``table``: a clip table
    already read from those files (tests share one between runs).

    Writes ``{out}/checkpoint.safetensors`` (tunable weights + config), ``{out}/train.json``
    (clip counts, final metrics, tunable parameter counts, seconds, the preprocessing backends
    and what ``auto`` chose for them) and ``{out}/logs/``.
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
    model = FineCLIPER(cfg.model, labels)
    module = FineCLIPERModule(model, cfg)
    data = FoldDataModule(table, fold, cfg, model.image_size, renderers=renderers)
    losses = check_fold_classes(inputs, fold, labels, table, cfg.data)
    num_test = len(fold_split(table.clips, fold, "test"))
    has_val = cfg.trainer.check_val_every_n_epoch > 0 and num_test > 0
    trainer = fit_trainer(cfg, out, device, precision, has_val)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - start
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
    preprocessing = preprocessing_params(inputs, needs)
    ckpt = save_checkpoint(out / CHECKPOINT_NAME, model, labels=labels, params=cfg.raw,
                           preprocessing=preprocessing, **info)
    write_train_summary(out / SUMMARY_NAME, trainer, model, info, losses, seconds,
                        len(data.train_set), table.backends)
    return ckpt
