"""Gather every evaluation's ``metrics.json`` into one table, with means over folds.

The report job reads exactly the folds its declared inputs name: each run summary
(``train/{run}/summary.json``, also of zero-shot transfers) lists the folds it averaged, and
their ``metrics.json`` sit beside it (:func:`metrics_of_summaries`). Run by hand without
summaries, ``dfer report`` finds the evaluations on disk instead (:func:`find_metrics`).

Every row says how much of its test split it covers (``evaluated`` of ``listed`` clips and why
the rest were not scored, from metrics.json's ``test_clips``), so a figure computed on part of
an official split is never read as one over all of it (:func:`incomplete_folds`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dfer.core.paths import METRICS, fold_file_of_run

METRIC_COLUMNS = ["run", "trained_on", "dataset", "zero_shot", "fold", "num_clips", "evaluated",
                  "listed", "coverage", "not_scored", "uar", "war", "path"]
SUMMARY_COLUMNS = ["run", "trained_on", "dataset", "zero_shot", "folds", "evaluated", "listed",
                   "coverage", "uar", "uar_std", "war", "war_std"]


def coverage_text(evaluated: int, listed: int | None) -> str:
    """``13 of 15 (86.7 %)``; ``13 of ?`` for an evaluation written before the count existed."""
    if listed is None or pd.isna(listed):
        return f"{int(evaluated)} of ?"
    listed = int(listed)
    share = 100.0 * int(evaluated) / listed if listed else 100.0
    return f"{int(evaluated)} of {listed}" + ("" if int(evaluated) == listed else f" ({share:.1f} %)")


def metrics_of_summaries(summaries: Sequence[str | Path]) -> list[Path]:
    """The ``metrics.json`` of every fold each run summary averaged, in summary order.

    A summary naming a fold whose metrics are gone is an error naming both files: the
    report would otherwise silently average fewer folds than the run had.
    """
    found: list[Path] = []
    for summary in map(Path, summaries):
        folds = [row["fold"] for row in json.loads(summary.read_text()).get("per_fold", [])]
        for fold in folds:
            path = fold_file_of_run(summary.parent, fold, METRICS)
            if not path.exists():
                raise FileNotFoundError(f"{summary} averages fold {fold}, but {path} is missing")
            found.append(path)
    return found


def find_metrics(results: Path, datasets: list[str]) -> list[Path]:
    """Every ``metrics.json`` under the datasets' ``train`` folders, in a stable order."""
    return sorted(p for ds in datasets for p in (results / ds / "train").rglob("metrics.json"))


def read_metrics(paths: list[Path]) -> pd.DataFrame:
    """One row per evaluation (fold). Raises naming the file when one is unreadable."""
    rows = []
    for path in paths:
        try:
            m = json.loads(path.read_text())
            counts = m.get("test_clips") or {}
            evaluated = int(counts.get("evaluated", m.get("num_clips", 0)))
            listed = counts.get("listed")
            lost = counts.get("lost") or {}
            rows.append({
                "run": m.get("run") or path.parent.parent.name,
                "trained_on": m.get("trained_on") or m.get("dataset"),
                "dataset": m["dataset"],
                "zero_shot": bool(m.get("zero_shot", False)),
                "fold": int(m.get("fold", 0)),
                "num_clips": int(m.get("num_clips", 0)),
                "evaluated": evaluated,
                "listed": None if listed is None else int(listed),
                "coverage": coverage_text(evaluated, listed),
                "not_scored": ", ".join(f"{k}: {v}" for k, v in sorted(lost.items()))
                + (f" ({'counted as wrong' if counts.get('unscored_clips', 'wrong') == 'wrong' else 'left out'})"
                   if lost else ""),
                "uar": float(m["uar"]),
                "war": float(m["war"]),
                "path": str(path),
            })
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable metrics file ({type(exc).__name__}: {exc})") from exc
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def summarize(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of UAR / WAR over the folds of each run and dataset."""
    if per_fold.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    keys = ["run", "trained_on", "dataset", "zero_shot"]
    rows = []
    for key, group in per_fold.groupby(keys, sort=True):
        listed = None if group["listed"].isna().any() else int(group["listed"].sum())
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "folds": len(group),
            "evaluated": int(group["evaluated"].sum()), "listed": listed,
            "coverage": coverage_text(int(group["evaluated"].sum()), listed),
            "uar": float(np.nanmean(group["uar"])), "uar_std": float(np.nanstd(group["uar"])),
            "war": float(np.nanmean(group["war"])), "war_std": float(np.nanstd(group["war"])),
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def incomplete_folds(per_fold: pd.DataFrame) -> pd.DataFrame:
    """The rows whose evaluation scored fewer clips than their split lists (or whose count was
    not recorded): the report flags each, since its UAR / WAR is not over the whole split."""
    if per_fold.empty:
        return per_fold
    short = per_fold["listed"].isna() | (per_fold["evaluated"] < per_fold["listed"].fillna(0))
    return per_fold[short]


def confusion_matrices(paths: list[Path]) -> list[tuple[str, list[str], np.ndarray]]:
    """(title, labels, matrix) of every evaluation, for the confusion-matrix grid."""
    out = []
    for path in paths:
        m = json.loads(path.read_text())
        if "confusion_matrix" not in m:
            continue
        title = f"{m.get('run', '')} {m['dataset']} fold {m.get('fold', 0)}".strip()
        transfer = next((p for p in path.parts if p.startswith("zeroshot-from-")), None)
        if transfer:  # a transfer to the same label set is not flagged zero_shot: say it here
            title += f" ({transfer})"
        out.append((title, list(m.get("labels", [])), np.asarray(m["confusion_matrix"])))
    return out
