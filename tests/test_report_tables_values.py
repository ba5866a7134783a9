"""The report's per-fold and summary tables from metrics.json files, value by value (issue 25).

Fast and direct (``dfer.report.metrics_table``, no figures or HTML): every column of
``read_metrics`` and ``summarize`` on folds whose expected values are worked out here by hand,
the coverage text, which folds are flagged as incomplete, which files a run summary names, and
the confusion-matrix titles. ``tests/test_report_values.py`` checks the same tables through
``build_report``; these are the ones a mutation run of the module can afford per mutant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfer.report.metrics_table import (
    METRIC_COLUMNS,
    SUMMARY_COLUMNS,
    confusion_matrices,
    coverage_text,
    find_metrics,
    incomplete_folds,
    metrics_of_summaries,
    read_metrics,
    summarize,
)


def _write(path: Path, **fields: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields))
    return path


def test_coverage_text_by_hand() -> None:
    assert coverage_text(13, 15) == "13 of 15 (86.7 %)"  # 1300 / 15 = 86.666...
    assert coverage_text(1, 3) == "1 of 3 (33.3 %)"
    assert coverage_text(2, 3) == "2 of 3 (66.7 %)"
    assert coverage_text(15, 15) == "15 of 15"  # complete: no share
    assert coverage_text(0, 0) == "0 of 0"  # an empty split is complete, not a division by zero
    assert coverage_text(13, None) == "13 of ?"
    assert coverage_text(np.int64(4), float("nan")) == "4 of ?"
    assert coverage_text(7.0, 8.0) == "7 of 8 (87.5 %)"


def test_read_metrics_every_column(tmp_path: Path) -> None:
    """Three files: full counts with two losses (left out), counts without a policy (counted as
    wrong) from a still-image dataset (``static``), and an old file with none of the optional
    fields (not static)."""
    full = _write(tmp_path / "ds" / "train" / "folder" / "fold-2" / "metrics.json", run="r1",
                  trained_on="src", dataset="ds", zero_shot=True, fold=2, num_clips=9, uar=0.5,
                  war=0.75, test_clips={"evaluated": 7, "listed": 10, "unscored_clips": "exclude",
                                        "lost": {"landmarks no_face": 2, "decode corrupt": 1}})
    wrong = _write(tmp_path / "ds" / "train" / "r1" / "fold-3" / "metrics.json", run="r1",
                   dataset="ds", fold=3, num_clips=4, uar=1, war=0.25, static=True,
                   test_clips={"evaluated": 4, "listed": 5, "lost": {"captions absent": 1}})
    old = _write(tmp_path / "ds" / "train" / "r0" / "fold-1" / "metrics.json", dataset="ds",
                 num_clips=6, uar="0.125", war=0.5)
    table = read_metrics([full, wrong, old])
    assert list(table.columns) == METRIC_COLUMNS
    rows = table.to_dict("records")
    assert rows[0] == {"run": "r1", "trained_on": "src", "dataset": "ds", "zero_shot": True,
                       "fold": 2, "num_clips": 9, "evaluated": 7, "listed": 10,
                       "coverage": "7 of 10 (70.0 %)",
                       "not_scored": "decode corrupt: 1, landmarks no_face: 2 (left out)",
                       "uar": 0.5, "war": 0.75, "path": str(full), "static": False}
    assert rows[1] == {"run": "r1", "trained_on": "ds", "dataset": "ds", "zero_shot": False,
                       "fold": 3, "num_clips": 4, "evaluated": 4, "listed": 5,
                       "coverage": "4 of 5 (80.0 %)", "not_scored": "captions absent: 1 (counted as wrong)",
                       "uar": 1.0, "war": 0.25, "path": str(wrong), "static": True}
    # no run: the folder above the fold's; no trained_on: the dataset; no counts: num_clips of ?
    assert rows[2]["run"] == "r0" and rows[2]["trained_on"] == "ds" and rows[2]["fold"] == 0
    assert rows[2]["evaluated"] == 6 and pd.isna(rows[2]["listed"]) and rows[2]["coverage"] == "6 of ?"
    assert rows[2]["not_scored"] == "" and rows[2]["uar"] == 0.125 and rows[2]["zero_shot"] is False
    assert rows[2]["static"] is False
    assert isinstance(rows[0]["fold"], int) and isinstance(rows[2]["uar"], float)
    assert read_metrics([]).columns.tolist() == METRIC_COLUMNS and read_metrics([]).empty


def test_read_metrics_names_the_unreadable_file(tmp_path: Path) -> None:
    no_uar = _write(tmp_path / "a" / "metrics.json", dataset="ds", war=0.5)
    with pytest.raises(ValueError, match=r"a/metrics.json: not a readable metrics file \(KeyError: 'uar'\)"):
        read_metrics([no_uar])
    broken = tmp_path / "b" / "metrics.json"
    broken.parent.mkdir()
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"b/metrics.json: not a readable metrics file \(JSONDecodeError"):
        read_metrics([broken])
    bad_type = _write(tmp_path / "c" / "metrics.json", dataset="ds", uar=None, war=0.5)
    with pytest.raises(ValueError, match=r"c/metrics.json: not a readable metrics file \(TypeError"):
        read_metrics([bad_type])
    with pytest.raises(ValueError, match=r"d/metrics.json: not a readable metrics file \((FileNotFound|OS)"):
        read_metrics([tmp_path / "d" / "metrics.json"])


def _per_fold(rows: list[tuple]) -> pd.DataFrame:
    cols = ["run", "trained_on", "dataset", "zero_shot", "fold", "evaluated", "listed", "uar", "war",
            "static"]
    return pd.DataFrame(rows, columns=cols)


def test_summarize_by_hand() -> None:
    """Run b (2 folds): UAR 0.2 / 0.6 -> mean 0.4, population std 0.2; WAR 0.5 / 0.9 -> 0.7,
    0.2. Evaluated 3 + 4 of 4 + 4. Run a (2 folds, one uncounted, one with UAR NaN): listed
    unknown, UAR over the one finite fold, WAR 0.1 / 0.3 -> 0.2, std 0.1. Rows in sorted (run, trained_on, dataset, zero_shot) order.
    ``static``: b's folds are both still-image evaluations (static); a has one static fold and
    one not, so a is not static (only a run whose every fold is static is)."""
    per_fold = _per_fold([("b", "x", "y", True, 1, 3, 4, 0.2, 0.5, True),
                          ("b", "x", "y", True, 2, 4, 4, 0.6, 0.9, True),
                          ("a", "d", "d", False, 1, 5, None, 0.3, 0.1, True),
                          ("a", "d", "d", False, 2, 2, 2, float("nan"), 0.3, False)])
    per_fold["listed"] = per_fold["listed"].astype("float64")
    with np.errstate(all="ignore"):
        out = summarize(per_fold)
    assert list(out.columns) == SUMMARY_COLUMNS
    a, b = out.to_dict("records")
    assert b == pytest.approx({"run": "b", "trained_on": "x", "dataset": "y", "zero_shot": True,
                               "folds": 2, "evaluated": 7, "listed": 8, "coverage": "7 of 8 (87.5 %)",
                               "uar": 0.4, "uar_std": 0.2, "war": 0.7, "war_std": 0.2, "static": True})
    assert (a["run"], a["trained_on"], a["dataset"], a["zero_shot"], a["folds"]) == ("a", "d", "d", False, 2)
    assert a["evaluated"] == 7 and pd.isna(a["listed"]) and a["coverage"] == "7 of ?"
    assert a["uar"] == pytest.approx(0.3) and a["uar_std"] == 0.0  # the NaN fold is left out
    assert a["war"] == pytest.approx(0.2) and a["war_std"] == pytest.approx(0.1)
    assert a["static"] is False and b["static"] is True
    assert isinstance(b["evaluated"], int)
    empty = summarize(per_fold.iloc[:0])
    assert empty.empty and list(empty.columns) == SUMMARY_COLUMNS


def test_incomplete_folds_flags_short_and_uncounted_folds() -> None:
    per_fold = _per_fold([("r", "d", "d", False, 1, 4, 4, 0.1, 0.1, False),
                          ("r", "d", "d", False, 2, 3, 4, 0.1, 0.1, False),
                          ("r", "d", "d", False, 3, 4, None, 0.1, 0.1, False),
                          ("r", "d", "d", False, 4, 0, 0, 0.1, 0.1, False)])
    per_fold["listed"] = per_fold["listed"].astype("float64")
    assert incomplete_folds(per_fold)["fold"].tolist() == [2, 3]
    empty = per_fold.iloc[:0]
    assert incomplete_folds(empty) is empty


def test_metrics_of_summaries_names_each_fold_file(tmp_path: Path) -> None:
    run = tmp_path / "ds" / "train" / "r"
    for fold in (1, 3):
        _write(run / f"fold-{fold}" / "metrics.json", dataset="ds", uar=0.1, war=0.1)
    summary = _write(run / "summary.json", per_fold=[{"fold": 3}, {"fold": 1}])
    other = _write(tmp_path / "ds" / "train" / "s" / "summary.json", per_fold=[])
    assert metrics_of_summaries([summary, str(other)]) == [run / "fold-3" / "metrics.json",
                                                            run / "fold-1" / "metrics.json"]
    gone = _write(run / "summary2.json", per_fold=[{"fold": 1}, {"fold": 2}])
    with pytest.raises(FileNotFoundError, match=r"summary2.json averages fold 2, but .*fold-2/metrics.json is missing"):
        metrics_of_summaries([gone])
    assert metrics_of_summaries([_write(run / "s3.json", other=1)]) == []


def test_find_metrics_is_sorted_and_per_dataset(tmp_path: Path) -> None:
    paths = [tmp_path / "b" / "train" / "r" / "fold-1" / "metrics.json",
             tmp_path / "a" / "train" / "z" / "fold-2" / "metrics.json",
             tmp_path / "a" / "train" / "c" / "fold-1" / "metrics.json",
             tmp_path / "c" / "train" / "r" / "fold-1" / "metrics.json",
             tmp_path / "a" / "eval" / "metrics.json"]
    for p in paths:
        _write(p, dataset="x", uar=0, war=0)
    assert find_metrics(tmp_path, ["b", "a"]) == [paths[2], paths[1], paths[0]]


def test_confusion_matrix_titles_labels_and_transfers(tmp_path: Path) -> None:
    plain = _write(tmp_path / "ds" / "train" / "r" / "fold-2" / "metrics.json", run="r", dataset="ds",
                   fold=2, labels=["a", "b"], confusion_matrix=[[1, 2], [3, 4]], uar=0, war=0)
    transfer = _write(tmp_path / "t" / "train" / "zeroshot-from-src" / "fold-1" / "metrics.json",
                      dataset="t", confusion_matrix=[[5]], uar=0, war=0)
    none = _write(tmp_path / "n" / "metrics.json", dataset="n", uar=0, war=0)
    out = confusion_matrices([plain, none, transfer])
    assert [(t, labels) for t, labels, _ in out] == [("r ds fold 2", ["a", "b"]),
                                                      ("t fold 0 (zeroshot-from-src)", [])]
    np.testing.assert_array_equal(out[0][2], np.array([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(out[1][2], np.array([[5]]))
    assert math.isclose(float(out[0][2].sum()), 10.0)
