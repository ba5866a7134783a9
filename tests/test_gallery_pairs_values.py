"""Values of the gallery's comparison view (dfer.report.gallery_pairs) that the worked example
of tests/test_gallery_pairs.py leaves open: which side a duplicate names, the reference's
columns for a clip it did not evaluate (their values and dtypes), a reference prediction of
class 0, the rounding of its confidence, the header without a test or one-side clips, and the
run names of two runs of one method. Every expected value is written out by hand.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dfer.report import gallery_pairs as gp

LABELS = ["happy", "sad", "angry"]


def _preds(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    """(clip id, truth, predicted class, confidence) -> a predictions table."""
    return pd.DataFrame({"clip_id": [r[0] for r in rows], "label_idx": [r[1] for r in rows],
                         "pred_idx": [r[2] for r in rows], "prob": [r[3] for r in rows],
                         "correct": [r[1] == r[2] for r in rows]})


MINE = _preds([("a", 0, 0, 0.9), ("b", 1, 2, 0.5), ("c", 2, 2, 0.7)])
# the reference evaluated a and b only; it predicts class 0 (happy) for b
REF = _preds([("a", 0, 1, 0.123456), ("b", 1, 0, 0.6)])


def test_a_duplicate_names_the_side_it_is_in() -> None:
    dup = pd.concat([MINE, MINE.head(1)], ignore_index=True)
    with pytest.raises(ValueError) as err:
        gp.agreement(dup, REF)
    assert str(err.value) == "predictions: clip 'a' has more than one prediction"
    with pytest.raises(ValueError) as err:
        gp.join_reference(dup, REF)
    assert str(err.value) == "predictions: clip 'a' has more than one prediction"
    with pytest.raises(ValueError) as err:
        gp.join_reference(MINE, pd.concat([REF, REF.tail(1)], ignore_index=True))
    assert str(err.value) == "reference predictions: clip 'b' has more than one prediction"


def test_join_fills_a_clip_the_reference_did_not_evaluate() -> None:
    joined = gp.join_reference(MINE, REF)
    assert joined["clip_id"].tolist() == ["a", "b", "c"]  # this run's order
    assert joined[gp.REF_PRED].tolist() == [1, 0, -1] and joined[gp.REF_PRED].dtype == np.int64
    assert joined[gp.REF_OK].tolist() == [False, False, False] and joined[gp.REF_OK].dtype == bool
    assert joined[gp.REF_PROB].iloc[:2].tolist() == [0.123456, 0.6] and np.isnan(joined[gp.REF_PROB].iloc[2])
    # a: 0 vs 1, b: 2 vs 0 disagree; c has nothing to compare with
    assert joined[gp.DISAGREE].tolist() == [True, True, False]
    # the reference right where this run is not: its column says so
    right = gp.join_reference(MINE, _preds([("b", 1, 1, 0.8)]))
    assert right[gp.REF_OK].tolist() == [False, True, False]


def test_a_card_keeps_a_reference_prediction_of_class_0_and_rounds_to_4_places() -> None:
    rows = {r.clip_id: r for r in gp.join_reference(MINE, REF).itertuples(index=False)}
    assert gp.card_pair(rows["b"], LABELS, "A", "R") == {
        "pair": "A: angry 0.50 | R: happy 0.60", "vs": {"p": 0, "c": 0.6, "ok": False}, "dis": True}
    assert gp.card_pair(rows["a"], LABELS, "A", "R")["vs"] == {"p": 1, "c": 0.1235, "ok": False}
    assert gp.card_pair(rows["c"], LABELS, "A", "R") == {"pair": "A: angry 0.70 | R: not evaluated",
                                                         "vs": None, "dis": False}


def test_header_without_a_test_or_clips_of_one_side() -> None:
    counts = {"common": 1, "agree": 1, "both_right": 1, "only_this": 0, "only_ref": 0, "both_wrong": 0,
              "mcnemar_p": None, "only_in_this": 0, "only_in_ref": 0}
    assert gp.pair_text(counts, "A", "R") == (
        "A vs R (reference) on the 1 clip both evaluated: same class predicted on 1; both right 1, "
        "only A right 0, only R right 0, both wrong 0 (exact McNemar p n/a: no clip only one got right)")
    assert gp.pair_text({"skipped": "their label lists differ"}, "A", "R") == \
        "not compared with R: their label lists differ"


def test_two_runs_of_one_method_are_paired_under_their_run_names() -> None:
    def fold(run: str, slot: str, method: str) -> SimpleNamespace:
        return SimpleNamespace(run=run, slot=slot, key=f"ds.{run}.{slot}", metrics={"method": method})

    ref, mine, lonely = fold("base", "fold-1", "cliper"), fold("tuned", "fold-1", "cliper"), fold("tuned", "fold-2", "cliper")
    pairs = gp.pair_folds([ref, mine, lonely], "base")
    assert list(pairs) == ["ds.tuned.fold-1"]  # fold 2 has no reference evaluation
    pair = pairs["ds.tuned.fold-1"]
    assert (pair.reference, pair.label, pair.ref_label) == (ref, "tuned", "base")
    assert gp.pair_folds([ref, mine], None) == {}
