"""DFER metrics: UAR, WAR, per-class accuracy, confusion matrix, and the mean over folds.

UAR (unweighted average recall) is the mean per-class recall over the classes that occur in
the targets: a class absent from the test set has no recall and is left out rather than
counted as 0 or 1. WAR (weighted average recall) is plain accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def confusion_matrix(targets: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of clips of true class i predicted as j."""
    t = np.asarray(targets, dtype=np.int64)
    p = np.asarray(preds, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"targets and predictions differ in length: {t.shape} vs {p.shape}")
    for name, arr in (("target", t), ("prediction", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} class index out of range [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall per class; NaN for classes with no target clip."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def uar(cm: np.ndarray) -> float:
    """Mean recall over the classes present in the targets (NaN if there are no targets)."""
    rec = per_class_recall(cm)
    present = ~np.isnan(rec)
    return float(rec[present].mean()) if present.any() else float("nan")


def war(cm: np.ndarray) -> float:
    """Overall accuracy (NaN if there are no targets)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def compute_metrics(
    targets: Sequence[int], preds: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """All metrics of one evaluation as a JSON-ready dict."""
    cm = confusion_matrix(targets, preds, len(labels))
    rec = per_class_recall(cm)
    return {
        "uar": uar(cm),
        "war": war(cm),
        "num_clips": int(cm.sum()),
        "labels": list(labels),
        "per_class_accuracy": {
            lab: (None if math.isnan(r) else float(r)) for lab, r in zip(labels, rec, strict=True)
        },
        "support": {lab: int(s) for lab, s in zip(labels, cm.sum(axis=1), strict=True)},
        "confusion_matrix": cm.tolist(),
    }


def mean_over_folds(fold_metrics: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of UAR / WAR (and per-class accuracy) across folds.

    Takes the ``metrics.json`` dicts of the folds of one run; the report stage calls this.
    """
    folds = list(fold_metrics)
    if not folds:
        raise ValueError("mean_over_folds needs at least one fold's metrics")
    out: dict[str, Any] = {"num_folds": len(folds)}
    for key in ("uar", "war"):
        vals = np.array([float(m[key]) for m in folds], dtype=np.float64)
        out[key] = float(np.nanmean(vals))
        out[f"{key}_std"] = float(np.nanstd(vals))
    labels = list(folds[0].get("labels", []))
    per_class: dict[str, float | None] = {}
    for lab in labels:
        vals = [m["per_class_accuracy"].get(lab) for m in folds]
        vals = [v for v in vals if v is not None]
        per_class[lab] = float(np.mean(vals)) if vals else None
    out["per_class_accuracy"] = per_class
    if "fold" in folds[0]:
        out["folds"] = [m["fold"] for m in folds]
    return out


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Any, title: str = "") -> None:
    """Row-normalised confusion matrix PNG (counts annotated), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfer.artifacts import atomic_path

    cm = np.asarray(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
