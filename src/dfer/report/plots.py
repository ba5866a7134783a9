"""Report figures: UAR/WAR per run and dataset, stage outcomes, confusion-matrix grid.

All figures are written atomically and without timestamps in their metadata, so re-running
the report on unchanged results gives byte-identical PNGs.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dfer.core.artifacts import atomic_path  # noqa: E402
from dfer.train.metrics import confusion_figsize, draw_confusion  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def _empty(path: Path, text: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    _save(fig, path)


def plot_metrics(summary: pd.DataFrame, path: Path) -> None:
    """Grouped bars of UAR and WAR (mean over folds, std as error bars) per run/dataset."""
    if summary.empty:
        _empty(path, "no evaluations yet")
        return
    names = [
        (f"{r.run}\n{r.trained_on}->{r.dataset}" if r.zero_shot else f"{r.run}\n{r.dataset}")
        + ("\n(images: WAR = accuracy)" if getattr(r, "static", False) else "")
        for r in summary.itertuples()
    ]
    x = np.arange(len(summary))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(summary) + 2), 4))
    ax.bar(x - 0.2, summary["uar"] * 100, 0.4, yerr=summary["uar_std"] * 100, label="UAR", capsize=3)
    ax.bar(x + 0.2, summary["war"] * 100, 0.4, yerr=summary["war_std"] * 100, label="WAR", capsize=3)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend()
    ax.set_title("mean over folds (error bars: std)")
    _save(fig, path)


def plot_stage_stats(stats: pd.DataFrame, path: Path) -> None:
    """Stacked bars of processed vs failed clips per dataset and stage (stages that did not
    run have no bar; the stage table names them)."""
    if "status" in stats.columns:
        stats = stats[stats["status"] != "not run"].reset_index(drop=True)
    if stats.empty:
        _empty(path, "no stage artifacts yet")
        return
    names = [f"{r.dataset}\n{r.stage}" for r in stats.itertuples()]
    x = np.arange(len(stats))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(stats) + 2), 4))
    ok = stats["clips_ok"].astype(float).to_numpy()
    failed = stats["clips_failed"].astype(float).to_numpy()
    ax.bar(x, ok, label="processed", color="tab:green")
    ax.bar(x, failed, bottom=ok, label="failed", color="tab:red")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("clips")
    ax.legend()
    ax.set_title("clips per stage")
    _save(fig, path)


def plot_confusion_grid(items: list[tuple[str, list[str], np.ndarray]], path: Path) -> None:
    """Every evaluation's confusion matrix (count and row % per cell, colour bar, per-class
    recall beside it, as in each fold's ``confusion.png``), at most 3 per row."""
    if not items:
        _empty(path, "no evaluations yet")
        return
    cols = min(3, len(items))
    rows = math.ceil(len(items) / cols)
    n = max(len(labels) for _t, labels, _m in items)
    width, height = confusion_figsize(n)
    # + 0.8 in a row: the titles and axis titles of a short (few-class) row stay inside
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, (height + 0.8) * rows), squeeze=False)
    for ax in axes.flat[len(items):]:
        ax.axis("off")
    for ax, (title, labels, cm) in zip(axes.flat, items, strict=False):
        draw_confusion(ax, cm, labels, title, fontsize=7)
    _save(fig, path)
