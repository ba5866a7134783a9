"""Evaluate a trained fold (or transfer a checkpoint zero-shot to another dataset).

Zero-shot works through the text side: the model scores the *target* dataset's class names
(optionally re-worded via ``label_prompts``) with its Positive / Negative descriptors, so a
model trained on MAFW's 11 classes predicts DFEW's 7 without any DFEW training.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch.utils.data import DataLoader

from dfer.core.artifacts import provenance, write_bytes_atomic, write_parquet
from dfer.core.devices import resolve_device
from dfer.core.paths import CONFUSION, METRICS, PREDICTIONS
from dfer.model.checkpoint import load_checkpoint
from dfer.train.config import DataConfig, auto_precision, lightning_devices
from dfer.train.data import ClipDataset, ClipTable, Renderer, collate, fold_split, read_clip_table
from dfer.train.inputs import DataInputs, needs_for
from dfer.train.label_mapping import is_zero_shot, label_prompts_for
from dfer.train.metrics import compute_metrics, plot_confusion
from dfer.train.module import FineCLIPERModule, explanations

__all__ = ["EXPLAIN_FIELDS", "PREDICTIONS_SCHEMA", "evaluate_checkpoint", "explanations", "summarize_folds"]

log = logging.getLogger(__name__)

EVAL_SCHEMA_VERSION = 1
PREDICTIONS_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("label", pa.string()), ("label_idx", pa.int64()),
    ("pred_idx", pa.int64()), ("pred_label", pa.string()), ("prob", pa.float32()),
    ("correct", pa.bool_()), ("probs", pa.list_(pa.float32())),
])
#: Optional columns, written when the model's forward output carries them (the report's
#: gallery shows why a clip got its prediction): per-class similarity to the positive and
#: negative descriptors, the fusion weight of each level (names in the ``modality_levels``
#: metadata) and each level's own class scores (``score_levels`` metadata; [levels][classes]).
EXPLAIN_FIELDS = {
    "sim_pos": pa.list_(pa.float32()), "sim_neg": pa.list_(pa.float32()),
    "modality_weights": pa.list_(pa.float32()), "level_scores": pa.list_(pa.list_(pa.float32())),
}


@dataclass
class Predictions:
    """What ``trainer.predict`` returned for one split, gathered over its batches."""

    clip_ids: list[str]
    probs: np.ndarray  # float32 [N, C]
    target: np.ndarray  # int64 [N]
    explained: list[dict[str, Any]]  # per batch: the explanation fields of EXPLAIN_FIELDS
    score_levels: list[str]

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(-1) if len(self.probs) else np.zeros(0, np.int64)


def predict_split(model: torch.nn.Module, loader: DataLoader, device: str, out: str | Path,
                  num_labels: int) -> Predictions:
    """The model over every batch of ``loader``, through Lightning's ``trainer.predict``
    (:meth:`FineCLIPERModule.predict_step`: device placement and autocast are Lightning's).
    One process on one device (``cuda:N`` is the N-th visible GPU), whatever the run trained on."""
    accelerator, devices = lightning_devices(device, 1)
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices,
        precision=auto_precision(device), logger=False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=True, default_root_dir=str(out),
    )
    steps = trainer.predict(FineCLIPERModule(model), dataloaders=loader) or []
    batches = [b for b in steps if isinstance(b, dict)]
    return Predictions(
        clip_ids=[c for b in batches for c in b["clip_id"]],
        probs=(torch.cat([b["probs"] for b in batches]).numpy() if batches
               else np.zeros((0, num_labels), np.float32)),
        target=(torch.cat([b["label"] for b in batches]).numpy() if batches
                else np.zeros(0, np.int64)),
        explained=[b["explained"] for b in batches],
        score_levels=next((b["score_levels"] for b in reversed(batches) if b["score_levels"]), []),
    )


def predictions_frame(preds: Predictions, labels: Sequence[str]) -> tuple[pd.DataFrame, pa.Schema]:
    """``predictions.parquet`` rows and schema: one row per clip, plus the explanation
    columns every batch had (:data:`EXPLAIN_FIELDS`)."""
    target, pred, prob = preds.target, preds.pred, preds.probs
    frame = pd.DataFrame({
        "clip_id": preds.clip_ids,
        "label": [labels[i] for i in target],
        "label_idx": target.astype(np.int64),
        "pred_idx": pred.astype(np.int64),
        "pred_label": [labels[i] for i in pred],
        "prob": prob.max(-1).astype(np.float32) if len(prob) else np.zeros(0, np.float32),
        "correct": pred == target,
        "probs": [row.astype(np.float32) for row in prob],
    })
    schema = PREDICTIONS_SCHEMA
    for key, kind in EXPLAIN_FIELDS.items():
        if preds.explained and all(key in e for e in preds.explained):
            frame[key] = [row.astype(np.float32).tolist() for e in preds.explained for row in e[key]]
            schema = schema.append(pa.field(key, kind))
    return frame, schema


def evaluate_checkpoint(
    checkpoint: str | Path,
    results: str | Path | None,
    dataset: str,
    fold: int,
    out: str | Path,
    split: str = "test",
    device: str = "auto",
    data: Mapping[str, Any] | None = None,
    label_prompts: Mapping[str, str] | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    renderers: tuple[Renderer, Renderer] | None = None,
    table: ClipTable | None = None,
    inputs: DataInputs | None = None,
) -> dict[str, Any]:
    """Write ``metrics.json``, ``predictions.parquet`` and ``confusion.png`` into ``out``.

    ``split``: ``test`` (clips with ``test_fold == fold``) or ``all`` (zero-shot on a whole
    dataset). ``data`` overrides the checkpoint run's data block (e.g. ``eval_batch_size``).
    Reads exactly ``inputs`` (``dfer evaluate`` passes the rule's declared files); without
    them, the files :meth:`DataInputs.from_results` names under ``results``. The forward pass
    is Lightning's ``trainer.predict`` over :meth:`FineCLIPERModule.predict_step`.
    """
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, overrides=model_overrides)
    needs = needs_for(model.cfg)
    if table is None:
        if inputs is None and results is None:
            raise ValueError("evaluate_checkpoint needs inputs, a table or a results folder")
        if inputs is None:
            inputs = DataInputs.from_results(results, dataset, needs)
        table = read_clip_table(inputs, needs)
    labels = list(table.labels)
    model.set_labels(label_prompts_for(labels, label_prompts))
    dcfg = DataConfig.from_dict({**((meta.get("params") or {}).get("data") or {}), **(data or {})})
    ds = ClipDataset(dataset, fold_split(table.clips, fold, split), table, needs, dcfg,
                     model.image_size, train=False, renderers=renderers)
    loader = DataLoader(ds, batch_size=dcfg.eval_batch_size or dcfg.batch_size, shuffle=False,
                        num_workers=dcfg.num_workers, collate_fn=collate)
    preds = predict_split(model, loader, dev, out, len(labels))
    metrics = compute_metrics(preds.target, preds.pred, labels)
    metrics.update({
        "dataset": dataset, "fold": int(fold), "split": split,
        "zero_shot": bool(is_zero_shot(meta, dataset, labels)),
        "trained_on": meta.get("dataset"), "run": meta.get("run"),
        "checkpoint": str(checkpoint), "skipped_clips": table.skipped,
    })
    frame, schema = predictions_frame(preds, labels)
    pmeta = provenance("evaluate", EVAL_SCHEMA_VERSION, model=model.cfg.backbone,
                       params={"split": split, "label_prompts": dict(label_prompts or {})},
                       checkpoint=str(checkpoint), labels=labels,
                       modality_levels=list(getattr(model, "fused_levels", [])),
                       score_levels=preds.score_levels)
    out = Path(out)
    write_parquet(out / PREDICTIONS, frame, pmeta, schema=schema)
    write_bytes_atomic(out / METRICS, json.dumps(metrics, indent=2, sort_keys=True).encode())
    title = f"{dataset} fold {fold}: UAR {metrics['uar']:.3f} WAR {metrics['war']:.3f}"
    plot_confusion(np.asarray(metrics["confusion_matrix"]), labels, out / CONFUSION, title)
    log.info("%s", title)
    return metrics


def load_fold_metrics(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read several folds' ``metrics.json`` files (for :func:`mean_over_folds`)."""
    return [json.loads(Path(p).read_text()) for p in paths]


def summarize_folds(metrics_paths: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Mean / std of UAR and WAR over folds, written to ``out`` (``summary.json``).

    The folds must be evaluations of one run on one dataset (same run, dataset and labels):
    averaging across different label sets would be meaningless, so it is an error.
    """
    from dfer.train.metrics import mean_over_folds

    folds = load_fold_metrics(metrics_paths)
    if not folds:
        raise ValueError("summarize_folds needs at least one metrics.json")
    for key in ("run", "dataset", "trained_on", "labels"):
        values = {json.dumps(m.get(key)) for m in folds}
        if len(values) > 1:
            raise ValueError(f"cannot average folds with different {key!r}: {sorted(values)}")
    summary = mean_over_folds(folds)
    first = folds[0]
    summary.update({
        "run": first.get("run"), "dataset": first.get("dataset"), "trained_on": first.get("trained_on"),
        "zero_shot": bool(first.get("zero_shot", False)), "labels": first.get("labels"),
        "num_clips": int(sum(int(m.get("num_clips", 0)) for m in folds)),
        "per_fold": [{"fold": m.get("fold"), "uar": m["uar"], "war": m["war"]} for m in folds],
        "sources": [str(p) for p in metrics_paths],
    })
    write_bytes_atomic(out, json.dumps(summary, indent=2, sort_keys=True).encode())
    return summary
