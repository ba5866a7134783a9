"""dfer.train.metrics on small label arrays whose results are worked out by hand.

Each expected value below is computed in the comment next to it, not by the code under test;
the tests are written to fail on any change of a count, a ratio, a key or a message.
"""

from __future__ import annotations

import math
import struct
import warnings

import numpy as np
import pytest

from dfer.train.metrics import (
    compute_metrics,
    confusion_matrix,
    mean_over_folds,
    per_class_recall,
    plot_confusion,
    uar,
    war,
)

# true:  0 1 2 2 1 0 2
# pred:  0 2 2 1 1 1 2
# class 0 (2 clips): predicted 0, 1   -> row [1, 1, 0], recall 1/2
# class 1 (2 clips): predicted 2, 1   -> row [0, 1, 1], recall 1/2
# class 2 (3 clips): predicted 2, 1, 2 -> row [0, 1, 2], recall 2/3
TARGETS = [0, 1, 2, 2, 1, 0, 2]
PREDS = [0, 2, 2, 1, 1, 1, 2]
CM = [[1, 1, 0], [0, 1, 1], [0, 1, 2]]


def test_confusion_matrix_counts_rows_true_columns_predicted() -> None:
    cm = confusion_matrix(TARGETS, PREDS, 3)
    assert cm.tolist() == CM
    assert cm.dtype == np.int64  # counts, not floats
    assert cm.shape == (3, 3)
    # one more class than occurs: an extra empty row and column
    assert confusion_matrix([1], [0], 3).tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_confusion_matrix_error_messages_name_the_bad_side() -> None:
    with pytest.raises(ValueError) as exc:
        confusion_matrix([0, 3], [0, 1], 3)
    assert str(exc.value) == "target class index out of range [0, 3)"
    with pytest.raises(ValueError) as exc:
        confusion_matrix([0, 1], [0, 3], 3)
    assert str(exc.value) == "prediction class index out of range [0, 3)"
    with pytest.raises(ValueError, match=r"^target class index out of range \[0, 2\)$"):
        confusion_matrix([-1], [0], 2)
    with pytest.raises(ValueError, match=r"^prediction class index out of range \[0, 2\)$"):
        confusion_matrix([0], [-1], 2)
    # the largest valid index is num_classes - 1
    assert confusion_matrix([2], [2], 3).tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 1]]
    with pytest.raises(ValueError) as exc:
        confusion_matrix([0, 1], [0], 3)
    assert str(exc.value) == "targets and predictions differ in length: (2,) vs (1,)"


def test_per_class_recall_uar_war_by_hand() -> None:
    cm = np.array(CM)
    np.testing.assert_allclose(per_class_recall(cm), [1 / 2, 1 / 2, 2 / 3])
    assert uar(cm) == pytest.approx((1 / 2 + 1 / 2 + 2 / 3) / 3)  # 0.5556
    assert war(cm) == pytest.approx(4 / 7)  # diagonal 1 + 1 + 2 of 7 clips
    assert isinstance(uar(cm), float) and isinstance(war(cm), float)


def test_class_without_targets_has_nan_recall_and_is_left_out_of_uar() -> None:
    # class 1 never occurs as a target; it is predicted once (a false positive for class 0)
    cm = confusion_matrix([0, 0, 2, 2], [0, 1, 2, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 2]]
    rec = per_class_recall(cm)
    assert rec[0] == 0.5 and math.isnan(rec[1]) and rec[2] == 1.0
    assert uar(cm) == pytest.approx(0.75)  # (0.5 + 1.0) / 2, not / 3
    assert war(cm) == pytest.approx(0.75)  # 3 of 4


def test_no_targets_give_nan_without_numpy_warnings() -> None:
    cm = confusion_matrix([], [], 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "mean of empty slice" / "invalid value" would raise
        assert math.isnan(uar(cm))
        assert math.isnan(war(cm))
        assert np.isnan(per_class_recall(cm)).all()


def test_compute_metrics_full_result_with_reordered_labels() -> None:
    labels = ["fear", "happiness", "anger"]
    m = compute_metrics(TARGETS, PREDS, labels)
    assert m == {
        "uar": pytest.approx((1 / 2 + 1 / 2 + 2 / 3) / 3),
        "war": pytest.approx(4 / 7),
        "num_clips": 7,
        "labels": ["fear", "happiness", "anger"],
        "per_class_accuracy": {"fear": 0.5, "happiness": 0.5, "anger": pytest.approx(2 / 3)},
        "support": {"fear": 2, "happiness": 2, "anger": 3},
        "confusion_matrix": CM,
    }
    assert type(m["num_clips"]) is int and type(m["support"]["anger"]) is int
    assert type(m["per_class_accuracy"]["fear"]) is float
    # the same clips with the label names in another order: only the names move
    swapped = compute_metrics(TARGETS, PREDS, ["anger", "fear", "happiness"])
    assert swapped["per_class_accuracy"] == {"anger": 0.5, "fear": 0.5,
                                             "happiness": pytest.approx(2 / 3)}
    assert swapped["confusion_matrix"] == CM


def test_compute_metrics_absent_class_is_none_and_zero_support() -> None:
    m = compute_metrics([1, 1], [1, 0], ["a", "b"])
    assert m["per_class_accuracy"] == {"a": None, "b": 0.5}
    assert m["support"] == {"a": 0, "b": 2}
    assert m["uar"] == 0.5 and m["war"] == 0.5
    assert m["confusion_matrix"] == [[0, 0], [1, 1]]


def fold(uar_: float, war_: float, per_class: dict, **extra) -> dict:
    return {"uar": uar_, "war": war_, "per_class_accuracy": per_class, **extra}


def test_mean_over_folds_by_hand() -> None:
    f1 = fold(0.5, 0.75, {"a": 1.0, "b": None}, labels=["a", "b"], fold=1)
    f2 = fold(0.75, 0.25, {"a": 0.5, "b": None}, labels=["a", "b"], fold=3)
    out = mean_over_folds([f1, f2])
    assert out == {
        "num_folds": 2,
        "uar": 0.625, "uar_std": 0.125,   # mean of 0.5, 0.75; population std
        "war": 0.5, "war_std": 0.25,      # mean of 0.75, 0.25
        "per_class_accuracy": {"a": 0.75, "b": None},  # b has no recall in any fold
        "folds": [1, 3],
    }


def test_mean_over_folds_skips_nan_and_missing_values() -> None:
    f1 = fold(float("nan"), 1.0, {"a": 0.2}, labels=["a"])
    f2 = fold(0.4, 0.5, {"a": None}, labels=["a"])
    f3 = fold(0.6, 0.0, {}, labels=["a"])
    out = mean_over_folds([f1, f2, f3])
    assert out["uar"] == pytest.approx(0.5) and out["uar_std"] == pytest.approx(0.1)
    assert out["war"] == pytest.approx(0.5)
    assert out["per_class_accuracy"] == {"a": pytest.approx(0.2)}  # only f1 has a value
    assert "folds" not in out  # no fold numbers given


def test_mean_over_folds_single_fold_and_no_labels() -> None:
    out = mean_over_folds([fold(0.3, 0.4, {"x": 0.3}, fold=2)])
    assert out == {"num_folds": 1, "uar": 0.3, "uar_std": 0.0, "war": 0.4, "war_std": 0.0,
                   "per_class_accuracy": {}, "folds": [2]}  # labels come from folds[0]
    # labels are those of the first fold, and the fold list is there only if folds[0] has one
    out = mean_over_folds(iter([fold(0.1, 0.1, {"x": 0.1}, labels=["x"]),
                                fold(0.3, 0.3, {"x": 0.3}, labels=["y"], fold=2)]))
    assert out["per_class_accuracy"] == {"x": pytest.approx(0.2)}
    assert "folds" not in out
    with pytest.raises(ValueError) as exc:
        mean_over_folds([])
    assert str(exc.value) == "mean_over_folds needs at least one fold's metrics"


# --- the confusion-matrix figure -------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def figures(monkeypatch):
    """The (figure, axes) pairs plot_confusion makes, kept for inspection after it returns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    real = plt.subplots

    def spy(*args, **kwargs):
        fig, ax = real(*args, **kwargs)
        made.append((fig, ax))
        return fig, ax

    monkeypatch.setattr(plt, "subplots", spy)
    return made


def test_plot_confusion_draws_counts_row_percentages_colour_bar_and_recall(tmp_path, figures) -> None:
    import matplotlib

    # rows sum to 4 and 2: row shares [[0.25, 0.75], [0.5, 0.5]]; no cell is 0 or 1, so the
    # colour scale (0 to 1) is set by plot_confusion, not taken from the data
    cm = np.array([[1, 3], [1, 1]])
    path = tmp_path / "cm.png"
    # a figure dpi other than the 100 that plot_confusion saves at
    with matplotlib.rc_context({"figure.dpi": 50, "savefig.dpi": "figure"}):
        plot_confusion(cm, ["calm", "joy"], path)
    (fig, ax), = figures
    assert list(tmp_path.iterdir()) == [path]
    data = path.read_bytes()
    assert png_size(data) == (650, 400)  # (4 + 2.5) x 4 inches at 100 dpi
    assert b"Software" not in data  # no matplotlib version stamp: byte-stable output
    assert tuple(fig.get_size_inches()) == (6.5, 4.0)
    (im,) = ax.images
    np.testing.assert_allclose(np.asarray(im.get_array()), [[0.25, 0.75], [0.5, 0.5]])
    assert im.get_cmap().name == "Blues" and im.get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["calm", "joy"]
    assert {(t.get_rotation(), t.get_ha()) for t in ax.get_xticklabels()} == {(45.0, "right")}
    assert [t.get_text() for t in ax.get_yticklabels()] == ["calm", "joy"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted class", "true class", "")
    cells = [(t.get_position(), t.get_text(), t.get_color(), t.get_ha(), t.get_va(),
              t.get_fontsize()) for t in ax.texts]
    assert cells == [
        ((0, 0), "1\n25%", "black", "center", "center", 8.0),
        ((1, 0), "3\n75%", "white", "center", "center", 8.0),  # 75 % > 50 %: white on dark blue
        ((0, 1), "1\n50%", "black", "center", "center", 8.0),  # exactly 50 %: still black
        ((1, 1), "1\n50%", "black", "center", "center", 8.0),
    ]
    # beside the matrix: its colour bar (same image, titled) and the per-class recall bars
    main, cbar, recall = fig.axes
    assert main is ax
    assert cbar.get_ylabel() == "share of the true class (row %)"
    assert cbar.get_ylim() == (0.0, 1.0)
    assert [round(b.get_width(), 6) for b in recall.patches] == [25.0, 50.0]  # recall 1/4, 1/2
    assert [b.get_y() + b.get_height() / 2 for b in recall.patches] == [0.0, 1.0]
    assert recall.get_ylim() == (1.5, -0.5)  # first class on top, as in the matrix rows
    assert recall.get_xlim() == (0.0, 100.0)
    assert [t.get_text() for t in recall.texts] == ["25%", "50%"]
    assert (recall.get_xlabel(), recall.get_title()) == ("recall %", "per-class recall")
    # the recall axes sit right of the colour bar, which sits right of the matrix, same height
    boxes = [a.get_position() for a in (ax, cbar, recall)]
    assert boxes[0].x1 <= boxes[1].x0 and boxes[1].x1 <= boxes[2].x0
    assert boxes[1].height == pytest.approx(boxes[0].height) == pytest.approx(boxes[2].height)


def test_plot_confusion_recall_of_a_class_without_clips_is_na(tmp_path, figures) -> None:
    plot_confusion(np.array([[2, 0], [0, 0]]), ["a", "b"], tmp_path / "cm.png")
    (fig, ax), = figures
    recall = fig.axes[2]
    assert [t.get_text() for t in recall.texts] == ["100%", "n/a"]
    assert [t.get_text() for t in ax.texts][2:] == ["0\n0%", "0\n0%"]  # empty row: 0 %, no NaN


def test_plot_confusion_grows_with_the_number_of_classes(tmp_path, figures) -> None:
    labels = [f"c{i}" for i in range(6)]
    plot_confusion(np.eye(6, dtype=int), labels, tmp_path / "cm.png", title="fold 2")
    (fig, ax), = figures
    assert tuple(fig.get_size_inches()) == pytest.approx((9.0, 6.5))  # 0.75 * 6 + 2, + 2.5 wide
    assert png_size((tmp_path / "cm.png").read_bytes()) == (900, 650)
    assert ax.get_title() == "fold 2"
    assert len(ax.texts) == 36
    # each row sums to 1: the diagonal is 1.0, not divided by anything larger
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), np.eye(6))
