"""Evaluate a trained fold (or transfer a checkpoint zero-shot to another dataset).

Zero-shot works through the text side: the model scores the *target* dataset's class names
(optionally re-worded via ``label_prompts``) with its Positive / Negative descriptors, so a
model trained on MAFW's 11 classes predicts DFEW's 7 without any DFEW training. Only the
evaluation reads ``label_prompts``; training always scores the dataset's own class names.

Published DFEW / FERV39k / MAFW figures are over every clip of the official test split, so the
evaluation is too: a clip is scored whenever the artifacts the model reads *at prediction* are
there (a missing caption does not matter to a model that uses captions only in its training
loss, :attr:`ModelConfig.captions_at_prediction`), and a clip that cannot be scored at all (no
frames after a failed decode, ...) counts as a wrong prediction (``data.unscored_clips:
wrong``, default) or is left out (``exclude``). metrics.json states ``evaluated N of M test
clips`` and why the rest were not scored (:class:`dfer.train.data.SplitAccount`), and holds the
metrics of the scored clips alone as well (``scored_only``).

A static (still-image) dataset is evaluated the same way; its metrics.json says ``static:
true``, counts ``test images`` and holds ``accuracy`` (the share of test images predicted
right, which is what WAR is; the static FER literature reports it as accuracy) beside UAR.
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
from dfer.manifests.labels import canonical_label
from dfer.methods.checkpoint import load_checkpoint
from dfer.methods.registry import spec_of_model
from dfer.train.config import DataConfig, auto_precision, lightning_devices
from dfer.train.data import (
    ClipDataset,
    ClipTable,
    Renderer,
    SplitAccount,
    collate,
    fold_split,
    read_clip_table,
)
from dfer.train.inputs import DataInputs, Needs, needs_for
from dfer.train.label_mapping import is_zero_shot, label_prompts_for
from dfer.train.metrics import compute_metrics, plot_confusion
from dfer.train.module import DFERModule, explanations

__all__ = ["EXPLAIN_FIELDS", "PREDICTIONS_SCHEMA", "evaluate_checkpoint", "explanations",
           "prediction_needs", "summarize_folds"]

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
                  num_labels: int, test_views: Sequence[str] = ("identity",)) -> Predictions:
    """The model over every batch of ``loader``, through Lightning's ``trainer.predict``
    (:meth:`DFERModule.predict_step`: device placement and autocast are Lightning's), the
    probabilities averaged over ``test_views``. One process on one device (``cuda:N`` is the
    N-th visible GPU), whatever the run trained on."""
    accelerator, devices = lightning_devices(device, 1)
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices,
        precision=auto_precision(device), logger=False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=True, default_root_dir=str(out),
    )
    module = DFERModule(model)
    module.test_views = tuple(test_views)
    steps = trainer.predict(module, dataloaders=loader) or []
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
        # object dtype even when empty: a split with nothing to score still writes its table
        # (an empty list becomes a float64 column, which Arrow cannot store as list<float>)
        "probs": pd.Series([row.astype(np.float32) for row in prob], dtype=object),
    })
    schema = PREDICTIONS_SCHEMA
    for key, kind in EXPLAIN_FIELDS.items():
        if preds.explained and all(key in e for e in preds.explained):
            frame[key] = [row.astype(np.float32).tolist() for e in preds.explained for row in e[key]]
            schema = schema.append(pa.field(key, kind))
    return frame, schema


def prediction_needs(model_cfg: Any) -> tuple[Needs, bool]:
    """``(needs, optional_captions)``: what scoring a clip needs of its artifacts, as the
    model's method says (``MethodSpec.prediction_needs``; by default what training reads).

    FineCLIPER: the visual levels the model reads, and captions only where they change a
    prediction (``caption_in_fusion``): optional when visual levels are fused too, required for
    a high-only model. A model that uses captions only in its training loss (the default) is
    evaluated without reading them, so a clip whose caption is empty is scored.
    """
    from dfer.methods.registry import spec_of_config

    spec = spec_of_config(model_cfg)
    if spec.prediction_needs is not None:
        return spec.prediction_needs(model_cfg)
    return needs_for(model_cfg), False


def account_record(account: SplitAccount, policy: str, what: str) -> dict[str, Any]:
    """The ``test_clips`` block of metrics.json: M, N, why the rest were not scored, and
    what the metrics did with them (one source for the log line, report and gallery)."""
    return {
        "listed": account.listed, "evaluated": account.evaluated,
        "not_scored": account.listed - account.evaluated, "lost": dict(sorted(account.lost.items())),
        "one_frame": account.one_frame, "unscored_clips": policy,
        "text": account.text(what, policy),
        # still images among the scored clips; only where there are any, so the records of
        # video datasets keep their keys
        **({"static": account.static} if account.static else {}),
    }


def metric_names(static: bool) -> tuple[str, str]:
    """``("UAR", "WAR")``, or ``("UAR", "accuracy")`` for a static (still-image) dataset, whose
    literature names the share of right predictions accuracy."""
    return ("UAR", "accuracy") if static else ("UAR", "WAR")


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
    is Lightning's ``trainer.predict`` over :meth:`DFERModule.predict_step`. The data block is
    the checkpoint run's over its method's defaults (the test frame sampler, the test views).
    """
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, overrides=model_overrides)
    spec = spec_of_model(model)
    dcfg = DataConfig.for_method(spec, (meta.get("params") or {}).get("data"), data)
    needs, optional_captions = prediction_needs(model.cfg)
    if table is None:
        if inputs is None and results is None:
            raise ValueError("evaluate_checkpoint needs inputs, a table or a results folder")
        if inputs is None:
            inputs = DataInputs.from_results(results, dataset, needs)
        table = read_clip_table(inputs, needs, optional_captions=optional_captions,
                                one_frame_clips=dcfg.one_frame_clips)
    labels = list(table.labels)
    prompts = label_prompts_for(labels, label_prompts)
    if hasattr(model, "set_labels"):
        model.set_labels(prompts)
    elif [canonical_label(x) for x in prompts] != [canonical_label(x) for x in model.labels]:
        raise ValueError(f"{checkpoint}: a {spec.title} model scores only the classes it was trained on "
                         f"({list(model.labels)}), not {list(prompts)}")
    ds = ClipDataset(dataset, fold_split(table.clips, fold, split), table, needs, dcfg,
                     model.image_size, train=False, renderers=renderers)
    loader = DataLoader(ds, batch_size=dcfg.eval_batch_size or dcfg.batch_size, shuffle=False,
                        num_workers=dcfg.num_workers, collate_fn=collate)
    preds = predict_split(model, loader, dev, out, len(labels), dcfg.test_views) if len(ds) else Predictions(
        [], np.zeros((0, len(labels)), np.float32), np.zeros(0, np.int64), [], [])
    account = table.account(fold, split)
    static = table.static
    what = ("test images" if static else "test clips") if split == "test" else (
        "images" if static else "clips")
    index = {lab: i for i, lab in enumerate(labels)}
    missed = [index[lab] for lab in account.lost_clips["label"]]
    policy = dcfg.unscored_clips
    metrics = compute_metrics(preds.target, preds.pred, labels,
                              missed=missed if policy == "wrong" else ())
    scored = compute_metrics(preds.target, preds.pred, labels)
    metrics.update({
        "dataset": dataset, "fold": int(fold), "split": split,
        "zero_shot": bool(is_zero_shot(meta, dataset, labels)),
        "trained_on": meta.get("dataset"), "run": meta.get("run"), "method": spec.name,
        "checkpoint": str(checkpoint), "skipped_clips": table.skipped,
        "label_order": table.label_order,
        "test_clips": account_record(account, policy, what),
        "not_scored_per_class": {lab: int(sum(1 for m in missed if m == i)) for i, lab in enumerate(labels)},
        "not_scored_clips": account.lost_clips.to_dict("records"),
        "scored_only": {"uar": scored["uar"], "war": scored["war"], "num_clips": scored["num_clips"]},
    })
    if static:  # WAR by the name the static FER literature gives it
        metrics["static"] = True
        metrics["accuracy"] = metrics["war"]
        metrics["scored_only"]["accuracy"] = scored["war"]
    frame, schema = predictions_frame(preds, labels)
    pmeta = provenance("evaluate", EVAL_SCHEMA_VERSION, model=getattr(model.cfg, "backbone", spec.name), method=spec.name,
                       params={"split": split, "label_prompts": dict(label_prompts or {})},
                       checkpoint=str(checkpoint), labels=labels, label_order=table.label_order,
                       modality_levels=list(getattr(model, "fused_levels", [])),
                       score_levels=preds.score_levels,
                       test_clips=metrics["test_clips"])
    out = Path(out)
    write_parquet(out / PREDICTIONS, frame, pmeta, schema=schema)
    write_bytes_atomic(out / METRICS, json.dumps(metrics, indent=2, sort_keys=True).encode())
    uar_name, war_name = metric_names(static)
    title = (f"{dataset} fold {fold}: {uar_name} {metrics['uar']:.3f} {war_name} "
             f"{metrics['war']:.3f}, {account.evaluated} of {account.listed} scored")
    plot_confusion(np.asarray(metrics["confusion_matrix"]), labels, out / CONFUSION, title)
    log.info("%s fold %d: %s; %s %.4f %s %.4f", dataset, fold, metrics["test_clips"]["text"],
             uar_name, metrics["uar"], war_name, metrics["war"])
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
    counts = [m.get("test_clips") or {} for m in folds]
    listed = sum(int(c.get("listed", m.get("num_clips", 0))) for c, m in zip(counts, folds, strict=True))
    evaluated = sum(int(c.get("evaluated", m.get("num_clips", 0))) for c, m in zip(counts, folds, strict=True))
    lost: dict[str, int] = {}
    for c in counts:
        for key, n in (c.get("lost") or {}).items():
            lost[key] = lost.get(key, 0) + int(n)
    static = bool(first.get("static", False))
    what = (("test images" if static else "test clips") if first.get("split", "test") == "test"
            else ("images" if static else "clips") + " (summed over folds)")
    summary.update({
        "run": first.get("run"), "method": first.get("method"), "dataset": first.get("dataset"),
        "trained_on": first.get("trained_on"),
        "zero_shot": bool(first.get("zero_shot", False)), "labels": first.get("labels"),
        "label_order": first.get("label_order"),
        **({"static": True, "accuracy": summary["war"], "accuracy_std": summary["war_std"]}
           if static else {}),
        "num_clips": int(sum(int(m.get("num_clips", 0)) for m in folds)),
        "test_clips": {"listed": listed, "evaluated": evaluated, "not_scored": listed - evaluated,
                       "lost": dict(sorted(lost.items())),
                       "text": f"evaluated {evaluated} of {listed} {what}"
                               + (f" (not scored: {', '.join(f'{k}: {v}' for k, v in sorted(lost.items()))})"
                                  if lost else "")},
        "per_fold": [{"fold": m.get("fold"), "uar": m["uar"], "war": m["war"],
                      "evaluated": int(c.get("evaluated", m.get("num_clips", 0))),
                      "listed": int(c.get("listed", m.get("num_clips", 0)))}
                     for m, c in zip(folds, counts, strict=True)],
        "sources": [str(p) for p in metrics_paths],
    })
    write_bytes_atomic(out, json.dumps(summary, indent=2, sort_keys=True).encode())
    return summary
