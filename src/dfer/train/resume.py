"""Resuming a fold after a kill or a time limit: a full-state file per finished epoch.

``{fold}/resume.ckpt`` (:data:`dfer.core.paths.RESUME`) is Lightning's checkpoint of the last
finished epoch, written by :func:`epoch_checkpoint` (Lightning's ``ModelCheckpoint``) at the end
of every epoch: the method's checkpoint state (FineCLIPER: the tunable weights and feature
statistics, never the frozen backbone, which is re-created from its source; a method that tunes
its backbone: the whole model; :meth:`DFERModule.on_save_checkpoint`), the optimizer (of the
current optimiser stage) and
learning-rate scheduler states, the epoch and step counters, torch's random states, and
:func:`run_digest` of what the fold computes. It is

- not a declared Snakemake output (Snakemake deletes a job's declared outputs before it runs, and
  a failed job's after): it survives the kill, and the re-run job finds it;
- written atomically (:class:`AtomicCheckpointIO`: a temporary file in the same folder renamed
  over the old one), so a kill while saving leaves the previous epoch's file;
- used only when its digest equals the new run's (:func:`usable_resume`): another config, other
  clips or other preprocessing start from epoch 0 with a warning. Where-keys
  (:data:`dfer.train.execution.RUN_EXECUTION_KEYS`: devices, nodes, workers, ...) are not in the
  digest: a fold may resume on another number of GPUs;
- removed once the fold's checkpoint and train.json are written (:func:`finish`).

Each epoch's data order depends on ``(seed, epoch)`` only (dfer.train.distributed), so a run
resumed after epoch k trains epochs k+1.. exactly as the uninterrupted run does and writes the
same checkpoint.safetensors (tests/test_train_distributed.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from dfer.core.artifacts import write_bytes_atomic
from dfer.core.paths import RESUME
from dfer.train.config import RunConfig, result_params

log = logging.getLogger(__name__)

#: where the module's entry sits in a Lightning checkpoint
CHECKPOINT_KEY = "dfer"
#: bump when the resume file's content changes meaning: older files are then not resumed from
#: (2: the method is part of the digest; a method's checkpoint state, not always the tunable one)
RESUME_SCHEMA = 2


def run_digest(cfg: RunConfig, *, dataset: str, fold: int, labels: Sequence[str], precision: str,
               train_clips: Sequence[str], test_clips: Sequence[str],
               preprocessing: Mapping[str, Any]) -> str:
    """SHA-256 of everything a fold's training result depends on: the method (named even when
    the run leaves ``model.method`` at its default), the run's params without its where-keys,
    the resolved precision, the dataset, fold and labels, the training and test clips, and the
    preprocessing settings its inputs were made with."""
    raw = {k: v for k, v in cfg.raw.items() if k not in ("dataset", "description")}
    if isinstance(raw.get("model"), Mapping):  # named once, below, whether written or not
        raw["model"] = {k: v for k, v in raw["model"].items() if k != "method"}
    params = result_params(raw)  # after: a model block left empty counts as absent
    what = {
        "schema": RESUME_SCHEMA,
        "method": cfg.method,
        "params": params,
        "precision": precision,
        "dataset": dataset, "fold": int(fold), "labels": list(labels),
        "train_clips": sorted(map(str, train_clips)), "test_clips": sorted(map(str, test_clips)),
        "preprocessing": preprocessing,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer with an atomic write (temporary file + rename in the same
    folder). Lightning's own goes through fsspec, whose local transaction writes the temporary
    file under /tmp and moves it across file systems: a copy, not a rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes_atomic(path, buffer.getvalue())


def epoch_checkpoint(out: Path) -> Any:
    """Lightning's ``ModelCheckpoint`` writing ``{out}/resume.ckpt`` at the end of every
    training epoch (after its validation), replacing the previous epoch's."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint(
        dirpath=str(out), filename=Path(RESUME).stem, monitor=None, save_top_k=1, every_n_epochs=1,
        save_on_train_epoch_end=True, save_last=False, enable_version_counter=False,
        auto_insert_metric_name=False,
    )


def read_resume(path: Path) -> dict[str, Any] | None:
    """The resume file's checkpoint, or None (with a warning) when it cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file must not stop the fold: it starts over
        log.warning("%s: cannot be read (%s: %s); training starts at epoch 0", path, type(exc).__name__, exc)
        return None


def usable_resume(out: Path, digest: str) -> tuple[Path | None, int]:
    """``({out}/resume.ckpt, its next epoch)`` when that file exists and was written by a run
    computing the same thing (``digest``); else ``(None, 0)``, with a warning saying why a
    file that is there is not used."""
    path = Path(out) / RESUME
    if not path.is_file():
        return None, 0
    ckpt = read_resume(path)
    if ckpt is None:
        return None, 0
    entry = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, Mapping) else None
    found = entry.get("digest") if isinstance(entry, Mapping) else None
    if found != digest:
        log.warning("%s was written by a run with another config, other clips or other preprocessing "
                    "(digest %s, this run %s); training starts at epoch 0 and replaces it",
                    path, str(found)[:12], digest[:12])
        return None, 0
    return path, int(ckpt.get("epoch", -1)) + 1


def restore_csv_history(logger: Any, out: Path, next_epoch: int) -> int:
    """Put the interrupted run's ``logs/metrics.csv`` rows of epochs before ``next_epoch``
    back into ``logger`` (a CSVLogger, which deletes the old file when it starts), so the log of
    a resumed fold covers every epoch once. Returns the number of rows restored."""
    path = Path(logger.log_dir) / "metrics.csv"
    if next_epoch <= 0 or not path.is_file():
        return 0
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    kept = 0
    for row in rows:
        values = {k: float(v) for k, v in row.items() if k != "step" and v not in ("", None)}
        epoch = values.get("epoch")
        if epoch is None or math.isnan(epoch) or epoch >= next_epoch:
            continue
        logger.log_metrics(values, step=int(float(row["step"])))
        kept += 1
    return kept


def finish(out: Path) -> None:
    """Remove the resume file once the fold's outputs are written (rank 0 only)."""
    (Path(out) / RESUME).unlink(missing_ok=True)
