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
    targets: Sequence[int], preds: Sequence[int], labels: Sequence[str],
    missed: Sequence[int] = (),
) -> dict[str, Any]:
    """All metrics of one evaluation as a JSON-ready dict.

    ``missed``: true classes of clips that could not be scored, counted as wrong predictions
    (in ``support`` and every recall, never on the diagonal). The confusion matrix holds the
    scored clips only: a row's sum plus that class's missed clips is its ``support``.
    """
    cm = confusion_matrix(targets, preds, len(labels))
    miss = np.asarray(list(missed), dtype=np.int64)
    if miss.size and (miss.min() < 0 or miss.max() >= len(labels)):
        raise ValueError(f"missed class index out of range [0, {len(labels)})")
    not_scored = np.bincount(miss, minlength=len(labels)) if miss.size else np.zeros(len(labels), np.int64)
    support = cm.sum(axis=1) + not_scored
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    present = ~np.isnan(rec)
    total = int(support.sum())
    return {
        "uar": float(rec[present].mean()) if present.any() else float("nan"),
        "war": float(np.trace(cm) / total) if total else float("nan"),
        "num_clips": total,
        "labels": list(labels),
        "per_class_accuracy": {
            lab: (None if math.isnan(r) else float(r)) for lab, r in zip(labels, rec, strict=True)
        },
        "support": {lab: int(s) for lab, s in zip(labels, support, strict=True)},
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


def row_percentages(cm: np.ndarray) -> np.ndarray:
    """``100 * cm[i, j] / sum(cm[i])``: the share of true class i predicted as j (0 for an
    empty row), the numbers a reader compares along a row; the diagonal is the recall."""
    cm = np.asarray(cm, dtype=np.float64)
    return 100.0 * cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)


def draw_confusion(ax: Any, cm: np.ndarray, labels: Sequence[str], title: str = "",
                   fontsize: float = 8.0) -> tuple[Any, Any]:
    """One confusion matrix on ``ax`` (count and row % in each cell), with its colour bar and
    the per-class recall as bars appended beside it, at the matrix's height and row order;
    shared by the per-fold figure and the report's grid so that both read the same way.
    Rows with no clip show ``n/a`` recall. Returns (colour bar axes, recall axes)."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    cm = np.asarray(cm)
    pct = row_percentages(cm)
    n = len(labels)
    im = ax.imshow(pct / 100.0, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(range(n), labels, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i, j]}\n{pct[i, j]:.0f}%", ha="center", va="center",
                    color="white" if pct[i, j] > 50 else "black", fontsize=fontsize)
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    divider = make_axes_locatable(ax)
    cax = divider.append_axes("right", size="4%", pad=0.1)
    rax = divider.append_axes("right", size="30%", pad=0.75)
    bar = ax.figure.colorbar(im, cax=cax)
    bar.set_label("share of the true class (row %)", fontsize=fontsize)
    bar.ax.tick_params(labelsize=fontsize)
    recall = per_class_recall(cm)
    rax.barh(range(n), np.nan_to_num(recall) * 100, color="tab:blue", height=0.6)
    rax.set_ylim(n - 0.5, -0.5)  # the matrix's row order: first class on top
    rax.set_yticks([])
    rax.set_xlim(0, 100)
    rax.set_xlabel("recall %", fontsize=fontsize)
    rax.tick_params(axis="x", labelsize=fontsize)
    for i, r in enumerate(recall):
        rax.text(2, i, "n/a" if math.isnan(r) else f"{100 * r:.0f}%", ha="left", va="center",
                 fontsize=fontsize)
    rax.set_title("per-class recall", fontsize=fontsize)
    return cax, rax


def confusion_figsize(num_classes: int) -> tuple[float, float]:
    """(width, height) in inches: the matrix grows with the classes (0.75 in a cell, room for
    two lines of text), plus a colour bar and the recall bars beside it."""
    side = max(4.0, 0.75 * num_classes + 2.0)
    return side + 2.5, side


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Any, title: str = "") -> None:
    """Confusion matrix PNG (count and row % per cell, colour bar, per-class recall),
    written atomically and without a version stamp (byte-stable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfer.core.artifacts import atomic_path

    fig, ax = plt.subplots(figsize=confusion_figsize(len(labels)))
    draw_confusion(ax, cm, labels, title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
