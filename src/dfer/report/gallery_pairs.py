"""Two methods on the same clips: the gallery's comparison view.

UAR / WAR over folds say which method scores higher; they do not say whether two methods err
on the *same* clips. For every evaluation of a run other than the reference
(``report.reference``, the run ``dfer compare`` pairs the others against) on the same dataset,
fold and (for a zero-shot transfer) source as one of the reference's, the gallery

* shows on each card both runs' predicted class and confidence
  (``DFER-CLIP: sad 0.41 | FineCLIPER: happy 0.62``: this fold's run first, the reference
  second);
* marks the cards where the two predict different classes (the page filters them, sorts them
  first, and a capped gallery chooses them first: they are what a comparison is about);
* says in the fold's header how many test clips both evaluated, on how many they agree, and
  the 2x2 table of right / wrong of the two (both right, only this run, only the reference,
  both wrong): the counts McNemar's test uses. Its exact form (a two-sided binomial test on
  the two off-diagonal counts, ``scipy.stats.binomtest``) is given beside them; unlike the
  paired t-test across folds, its unit is the clip, so it assumes the clips independent.

A clip one run evaluated and the other did not (a clip lost upstream for one method's
inputs only, or a different ``data.unscored_clips``) is outside the table; the header counts
such clips on each side and their cards say "not evaluated". Two runs whose label lists differ
are not compared (their class indices mean different things); the header says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

#: column of a paired fold's predictions: the reference's prediction of the clip (-1: none),
#: its confidence, whether it is right, and whether the two runs predict different classes
REF_PRED, REF_PROB, REF_OK, DISAGREE = "ref_pred_idx", "ref_prob", "ref_correct", "disagree"


@dataclass(frozen=True)
class Pair:
    """What a fold's cards are compared with: the reference run's evaluation of the same
    dataset and fold, and how the two runs are named on the page."""

    reference: Any  # dfer.report.gallery.Fold (not imported: that module imports this one)
    label: str  # this fold's run, as the cards name it
    ref_label: str  # the reference run, as the cards name it


def method_title(metrics: dict[str, Any]) -> str:
    """The method's name as the comparison tables show it (``dfer.report.compare.TITLES``)."""
    from dfer.report.compare import TITLES

    method = metrics.get("method")
    return TITLES.get(str(method), str(method)) if method else ""


def side_labels(metrics: dict[str, Any], ref_metrics: dict[str, Any], run: str, ref_run: str) -> tuple[str, str]:
    """(this run's label, the reference's label): the method titles when they tell the two
    apart, else the run names (two runs of one method)."""
    mine, theirs = method_title(metrics), method_title(ref_metrics)
    if mine and theirs and mine != theirs:
        return mine, theirs
    return run, ref_run


def pair_folds(folds: Sequence[Any], reference: str | None) -> dict[str, Pair]:
    """fold key -> its :class:`Pair`, for every fold of a run other than ``reference`` whose
    (dataset, fold, zero-shot source) the reference also evaluated. None: no comparison."""
    if not reference:
        return {}
    ref_by_slot = {f.slot: f for f in folds if f.run == reference}
    pairs = {}
    for fold in folds:
        ref = ref_by_slot.get(fold.slot)
        if fold.run == reference or ref is None:
            continue
        label, ref_label = side_labels(fold.metrics, ref.metrics, fold.run, ref.run)
        pairs[fold.key] = Pair(ref, label, ref_label)
    return pairs


def _unique(preds: pd.DataFrame, what: str) -> pd.DataFrame:
    dup = preds["clip_id"].astype(str).duplicated()
    if dup.any():
        raise ValueError(f"{what}: clip {preds['clip_id'][dup].iloc[0]!r} has more than one prediction")
    return preds


def join_reference(preds: pd.DataFrame, ref_preds: pd.DataFrame, what: str = "predictions",
                   ref_what: str = "reference predictions") -> pd.DataFrame:
    """``preds`` with the reference's prediction of each clip (columns :data:`REF_PRED` (-1
    where the reference did not evaluate the clip), :data:`REF_PROB` (NaN), :data:`REF_OK`
    and :data:`DISAGREE` (False where there is nothing to compare)), in ``preds``' order."""
    _unique(preds, what)
    ref = _unique(ref_preds, ref_what)
    ref = pd.DataFrame({"clip_id": ref["clip_id"].astype(str), REF_PRED: ref["pred_idx"].astype("int64"),
                        REF_PROB: ref["prob"].astype("float64"), REF_OK: ref["correct"].astype(bool)})
    out = preds.assign(clip_id=preds["clip_id"].astype(str)).merge(ref, on="clip_id", how="left")
    present = out[REF_PRED].notna()
    out[REF_PRED] = out[REF_PRED].fillna(-1).astype("int64")
    out[REF_OK] = out[REF_OK].where(present, False).astype(bool)
    out[DISAGREE] = present & (out["pred_idx"].astype("int64") != out[REF_PRED])
    return out


def agreement(preds: pd.DataFrame, ref_preds: pd.DataFrame, what: str = "predictions",
              ref_what: str = "reference predictions") -> dict[str, Any]:
    """The clip-level comparison of two evaluations of the same clips: ``common`` (clips both
    evaluated), ``agree`` (of those, same predicted class), the 2x2 right / wrong table
    ``both_right``, ``only_this``, ``only_ref``, ``both_wrong``, the exact McNemar p
    (``mcnemar_p``: two-sided binomial test of ``only_this`` against ``only_ref``; None when
    both are 0), and the clips only one side evaluated (``only_in_this``, ``only_in_ref``).
    ``what`` / ``ref_what`` name the two tables in the error a duplicated clip raises (the
    gallery passes their files)."""
    from scipy.stats import binomtest

    mine = _unique(preds, what).assign(clip_id=preds["clip_id"].astype(str)).set_index("clip_id")
    theirs = _unique(ref_preds, ref_what).assign(
        clip_id=ref_preds["clip_id"].astype(str)).set_index("clip_id")
    common = mine.index.intersection(theirs.index)
    a, b = mine.loc[common], theirs.loc[common]
    ok_a, ok_b = a["correct"].astype(bool).to_numpy(), b["correct"].astype(bool).to_numpy()
    only_this, only_ref = int((ok_a & ~ok_b).sum()), int((~ok_a & ok_b).sum())
    discordant = only_this + only_ref
    return {
        "common": len(common),
        "agree": int((a["pred_idx"].to_numpy() == b["pred_idx"].to_numpy()).sum()),
        "both_right": int((ok_a & ok_b).sum()), "only_this": only_this, "only_ref": only_ref,
        "both_wrong": int((~ok_a & ~ok_b).sum()),
        "mcnemar_p": float(binomtest(only_this, discordant, 0.5).pvalue) if discordant else None,
        "only_in_this": int(len(mine.index.difference(theirs.index))),
        "only_in_ref": int(len(theirs.index.difference(mine.index))),
    }


def _clips(n: int) -> str:
    return f"{n} clip{'' if n == 1 else 's'}"


def pair_text(counts: dict[str, Any], label: str, ref_label: str) -> str:
    """The fold header's line on the comparison (every count of :func:`agreement`)."""
    if counts.get("skipped"):
        return f"not compared with {ref_label}: {counts['skipped']}"
    p = counts["mcnemar_p"]
    text = (f"{label} vs {ref_label} (reference) on the {_clips(counts['common'])} both evaluated: "
            f"same class predicted on {counts['agree']}; both right {counts['both_right']}, "
            f"only {label} right {counts['only_this']}, only {ref_label} right {counts['only_ref']}, "
            f"both wrong {counts['both_wrong']} (exact McNemar p "
            + ("n/a: no clip only one got right" if p is None else f"{p:.3g}") + ")")
    missing = [f"{_clips(counts[k])} evaluated by {who} only" for k, who in
               (("only_in_this", label), ("only_in_ref", ref_label)) if counts[k]]
    return text + ("; " + ", ".join(missing) + " (not in these counts)" if missing else "")


def card_pair_text(row: Any, labels: Sequence[str], label: str, ref_label: str) -> str:
    """``DFER-CLIP: sad 0.41 | FineCLIPER: happy 0.62``: both runs' predicted class and
    confidence for one clip (``row``: a row of :func:`join_reference`)."""
    mine = f"{label}: {labels[int(row.pred_idx)]} {float(row.prob):.2f}"
    ref_pred = int(getattr(row, REF_PRED))
    theirs = (f"{ref_label}: {labels[ref_pred]} {float(getattr(row, REF_PROB)):.2f}" if ref_pred >= 0
              else f"{ref_label}: not evaluated")
    return f"{mine} | {theirs}"


def card_pair(row: Any, labels: Sequence[str], label: str, ref_label: str) -> dict[str, Any]:
    """A card's comparison keys: ``pair`` (the text), ``vs`` (the reference's ``p`` predicted
    class, ``c`` confidence, ``ok``; null when it did not evaluate the clip), ``dis`` (the two
    predict different classes)."""
    ref_pred = int(getattr(row, REF_PRED))
    vs = None if ref_pred < 0 else {"p": ref_pred, "c": round(float(getattr(row, REF_PROB)), 4),
                                    "ok": bool(getattr(row, REF_OK))}
    return {"pair": card_pair_text(row, labels, label, ref_label), "vs": vs, "dis": bool(getattr(row, DISAGREE))}
