"""Evaluate a trained fold (or transfer a checkpoint zero-shot to another dataset).

Zero-shot works through the text side: the model scores the *target* dataset's class names
(optionally re-worded via ``label_prompts``) with its Positive / Negative descriptors, so a
model trained on MAFW's 11 classes predicts DFEW's 7 without any DFEW training.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dfer.artifacts import provenance, write_bytes_atomic, write_parquet
from dfer.devices import resolve_device
from dfer.model.checkpoint import load_checkpoint
from dfer.paths import CONFUSION, METRICS, PREDICTIONS
from dfer.train.config import DataConfig
from dfer.train.data import ClipDataset, ClipTable, Renderer, collate, fold_split, load_clip_table
from dfer.train.label_mapping import is_zero_shot, label_prompts_for
from dfer.train.metrics import compute_metrics, plot_confusion
from dfer.train.module import model_inputs, needs_for

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


def explanations(out: Any, batch_size: int) -> dict[str, np.ndarray]:
    """The optional prediction columns of one batch, from what the forward output exposes.

    Read by name, so a model without one of them simply writes fewer columns.
    ``modality_weights`` are learned per model, not per clip: repeated on every row so that a
    row explains its prediction on its own.
    """
    found: dict[str, np.ndarray] = {}
    for key in ("sim_pos", "sim_neg"):
        value = getattr(out, key, None)
        if torch.is_tensor(value):
            found[key] = value.float().cpu().numpy()
    weights = getattr(out, "modality_weights", None)
    if torch.is_tensor(weights):
        found["modality_weights"] = np.broadcast_to(weights.float().cpu().numpy(), (batch_size, weights.numel()))
    scores = getattr(out, "level_scores", None)
    if isinstance(scores, Mapping) and scores:
        found["level_scores"] = np.stack([v.float().cpu().numpy() for v in scores.values()], axis=1)
    return found


def evaluate_checkpoint(
    checkpoint: str | Path,
    results: str | Path,
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
) -> dict[str, Any]:
    """Write ``metrics.json``, ``predictions.parquet`` and ``confusion.png`` into ``out``.

    ``split``: ``test`` (clips with ``test_fold == fold``) or ``all`` (zero-shot on a whole
    dataset). ``data`` overrides the checkpoint run's data block (e.g. ``eval_batch_size``).
    """
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, overrides=model_overrides)
    needs = needs_for(model.cfg)
    if table is None:
        table = load_clip_table(results, dataset, needs)
    labels = list(table.labels)
    model.set_labels(label_prompts_for(labels, label_prompts))
    zero_shot = is_zero_shot(meta, dataset, labels)
    run_data = dict((meta.get("params") or {}).get("data") or {})
    run_data.update(data or {})
    dcfg = DataConfig.from_dict(run_data)
    clips = fold_split(table.clips, fold, split)
    ds = ClipDataset(results, dataset, clips, table, needs, dcfg, model.image_size, train=False,
                     renderers=renderers)
    loader = DataLoader(ds, batch_size=dcfg.eval_batch_size or dcfg.batch_size, shuffle=False,
                        num_workers=dcfg.num_workers, collate_fn=collate)
    model.to(dev).eval()
    use_amp = dev.startswith("cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    ids: list[str] = []
    targets: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    explained: list[dict[str, np.ndarray]] = []
    score_levels: list[str] = []
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"evaluate {dataset} fold {fold}", unit="batch"):
            inputs = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in model_inputs(batch).items()}
            with torch.autocast(device_type="cuda", dtype=amp_dtype, enabled=use_amp):
                result = model(**inputs)
                logits = result.logits
            probs.append(torch.softmax(logits.float(), -1).cpu().numpy())
            explained.append(explanations(result, len(logits)))
            score_levels = list(getattr(result, "level_scores", None) or score_levels)
            targets.append(batch["label"].numpy())
            ids.extend(batch["clip_id"])
    prob = np.concatenate(probs) if probs else np.zeros((0, len(labels)), np.float32)
    target = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    pred = prob.argmax(-1) if len(prob) else np.zeros(0, np.int64)
    metrics = compute_metrics(target, pred, labels)
    metrics.update({
        "dataset": dataset, "fold": int(fold), "split": split, "zero_shot": bool(zero_shot),
        "trained_on": meta.get("dataset"), "run": meta.get("run"),
        "checkpoint": str(checkpoint), "skipped_clips": table.skipped,
    })
    out = Path(out)
    frame = pd.DataFrame({
        "clip_id": ids,
        "label": [labels[i] for i in target],
        "label_idx": target.astype(np.int64),
        "pred_idx": pred.astype(np.int64),
        "pred_label": [labels[i] for i in pred],
        "prob": prob.max(-1).astype(np.float32) if len(prob) else np.zeros(0, np.float32),
        "correct": pred == target,
        "probs": [row.astype(np.float32) for row in prob],
    })
    schema = PREDICTIONS_SCHEMA
    for key, kind in EXPLAIN_FIELDS.items():  # only columns every batch had
        if explained and all(key in e for e in explained):
            frame[key] = [row.astype(np.float32).tolist() for e in explained for row in e[key]]
            schema = schema.append(pa.field(key, kind))
    pmeta = provenance("evaluate", EVAL_SCHEMA_VERSION, model=model.cfg.backbone,
                       params={"split": split, "label_prompts": dict(label_prompts or {})},
                       checkpoint=str(checkpoint), labels=labels,
                       modality_levels=list(getattr(model, "fused_levels", [])), score_levels=score_levels)
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
