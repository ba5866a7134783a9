"""UAR / WAR / per-class accuracy / confusion matrix against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dfer.train.evaluate import summarize_folds
from dfer.train.metrics import (
    compute_metrics,
    confusion_matrix,
    mean_over_folds,
    plot_confusion,
    uar,
    war,
)


def test_uar_war_with_a_class_never_predicted() -> None:
    # class 0: 2 of 3 right, class 1: 1 of 2 right, class 2: never predicted (recall 0)
    targets = [0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 1, 0, 0]
    cm = confusion_matrix(targets, preds, 3)
    assert cm.tolist() == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert uar(cm) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert war(cm) == pytest.approx(3 / 6)


def test_class_absent_from_targets_is_left_out_of_uar() -> None:
    labels = ["happy", "sad", "angry", "fear"]
    m = compute_metrics([0, 0, 1, 1], [0, 3, 1, 1], labels)
    # angry and fear have no target clip: no recall, left out of UAR (mean over happy, sad)
    assert m["per_class_accuracy"] == {"happy": 0.5, "sad": 1.0, "angry": None, "fear": None}
    assert m["uar"] == pytest.approx(0.75)
    assert m["war"] == pytest.approx(0.75)
    assert m["support"] == {"happy": 2, "sad": 2, "angry": 0, "fear": 0}
    assert m["confusion_matrix"][0] == [1, 0, 0, 1]
    assert m["num_clips"] == 4


def test_uar_differs_from_war_on_imbalanced_classes() -> None:
    # 8 clips of class 0 all right, 2 of class 1 all wrong: WAR 0.8, UAR 0.5
    cm = confusion_matrix([0] * 8 + [1] * 2, [0] * 10, 2)
    assert war(cm) == pytest.approx(0.8)
    assert uar(cm) == pytest.approx(0.5)


def test_empty_and_invalid_inputs() -> None:
    cm = confusion_matrix([], [], 3)
    assert math.isnan(uar(cm)) and math.isnan(war(cm))
    with pytest.raises(ValueError, match="out of range"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1], [0], 3)


def test_mean_over_folds() -> None:
    labels = ["a", "b"]
    f1 = {**compute_metrics([0, 1], [0, 1], labels), "fold": 1}
    f2 = {**compute_metrics([0, 1, 1], [0, 0, 0], labels), "fold": 2}
    out = mean_over_folds([f1, f2])
    assert out["uar"] == pytest.approx((1.0 + 0.5) / 2)
    assert out["war"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert out["uar_std"] == pytest.approx(0.25)
    assert out["per_class_accuracy"] == {"a": 1.0, "b": 0.5}
    assert out["folds"] == [1, 2]
    with pytest.raises(ValueError):
        mean_over_folds([])


def test_summarize_folds_writes_summary_and_refuses_mixed_runs(tmp_path) -> None:
    labels = ["a", "b"]
    paths = []
    for k, preds in ((1, [0, 1]), (2, [1, 1])):
        m = {**compute_metrics([0, 1], preds, labels), "fold": k, "run": "r", "dataset": "d",
             "trained_on": "d", "zero_shot": False}
        p = tmp_path / f"fold-{k}" / "metrics.json"
        p.parent.mkdir()
        p.write_text(json.dumps(m))
        paths.append(p)
    out = tmp_path / "summary.json"
    summary = summarize_folds(paths, out)
    on_disk = json.loads(out.read_text())
    assert on_disk["uar"] == pytest.approx(0.75) == summary["uar"]
    assert on_disk["num_folds"] == 2 and on_disk["num_clips"] == 4
    assert [f["fold"] for f in on_disk["per_fold"]] == [1, 2]
    other = json.loads(paths[1].read_text())
    other["run"] = "another"
    paths[1].write_text(json.dumps(other))
    with pytest.raises(ValueError, match="different 'run'"):
        summarize_folds(paths, tmp_path / "bad.json")


def test_plot_confusion_writes_png(tmp_path) -> None:
    path = tmp_path / "cm.png"
    plot_confusion(np.array([[3, 1], [0, 2]]), ["x", "y"], path, "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
