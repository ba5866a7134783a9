"""The gallery's comparison view (issue 26): two runs' predictions for the same clips.

Ten clips, two runs: the reference ``ref`` (FineCLIPER) evaluated c1-c7 and c9-c10, ``other``
(DFER-CLIP) evaluated c1-c6 and c8-c10. Every expected count, text and order below is worked
out by hand from this table (truth / ref prediction / other prediction):

    c1  happy  happy 0.62  happy 0.55   both right, agree
    c2  sad    sad   0.70  sad   0.50   both right, agree
    c3  angry  angry 0.40  happy 0.45   only ref right
    c4  happy  sad   0.50  happy 0.60   only other right
    c5  sad    happy 0.62  angry 0.41   both wrong, disagree
    c6  angry  happy 0.80  happy 0.90   both wrong, agree
    c7  happy  happy 0.75  -            ref only
    c8  sad    -           sad   0.33   other only
    c9  sad    sad   0.66  angry 0.30   only ref right
    c10 sad    sad   0.64  angry 0.35   only ref right

Both evaluated 8; same class on 3 (c1 c2 c6); both right 2, only other 1, only ref 3, both
wrong 2; exact McNemar p = 2 * P(X <= 1 | n=4, 1/2) = 2 * (1 + 4) / 16 = 0.625.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfer.core.artifacts import provenance, write_parquet
from dfer.core.paths import shard_file
from dfer.report import gallery as g
from dfer.report import gallery_pairs as gp
from dfer.report.write import build_report

LABELS = ["happy", "sad", "angry"]
H, S, A = 0, 1, 2
TRUTH = {"c1": H, "c2": S, "c3": A, "c4": H, "c5": S, "c6": A, "c7": H, "c8": S, "c9": S, "c10": S}
REF = {"c1": (H, 0.62), "c2": (S, 0.70), "c3": (A, 0.40), "c4": (S, 0.50), "c5": (H, 0.62),
       "c6": (H, 0.80), "c7": (H, 0.75), "c9": (S, 0.66), "c10": (S, 0.64)}
OTHER = {"c1": (H, 0.55), "c2": (S, 0.50), "c3": (H, 0.45), "c4": (H, 0.60), "c5": (A, 0.41),
         "c6": (H, 0.90), "c8": (S, 0.33), "c9": (A, 0.30), "c10": (A, 0.35)}
HEADER = ("DFER-CLIP vs FineCLIPER (reference) on the 8 clips both evaluated: same class predicted on 3; "
          "both right 2, only DFER-CLIP right 1, only FineCLIPER right 3, both wrong 2 (exact McNemar p 0.625); "
          "1 clip evaluated by DFER-CLIP only, 1 clip evaluated by FineCLIPER only (not in these counts)")


def _preds(table: dict[str, tuple[int, float]]) -> pd.DataFrame:
    rows = []
    for cid, (pred, conf) in table.items():
        probs = np.full(3, (1 - conf) / 2, np.float32)
        probs[pred] = conf
        rows.append({"clip_id": cid, "label": LABELS[TRUTH[cid]], "label_idx": TRUTH[cid], "pred_idx": pred,
                     "pred_label": LABELS[pred], "prob": np.float32(conf), "correct": pred == TRUTH[cid],
                     "probs": probs})
    return pd.DataFrame(rows)


def _fold(res: Path, run: str, method: str, table: dict[str, tuple[int, float]], labels: list[str] = LABELS,
          summary: bool = False) -> Path:
    folder = res / "ds" / "train" / run / "fold-1"
    write_parquet(folder / "predictions.parquet", _preds(table), provenance("evaluate", 1, labels=labels))
    (folder / "metrics.json").write_text(json.dumps({"dataset": "ds", "run": run, "method": method, "fold": 1,
                                                     "uar": 0.5, "war": 0.5, "labels": labels}))
    if summary:
        (folder.parent / "summary.json").write_text(json.dumps({
            "run": run, "method": method, "dataset": "ds", "labels": labels,
            "per_fold": [{"fold": 1, "uar": 0.5, "war": 0.5}]}))
    return folder / "metrics.json"


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """results/ with a manifest of the ten clips (no frames: the cards say so) and both runs."""
    res = tmp_path / "results"
    write_parquet(shard_file(res, "ds", "manifest", "000", ".parquet"), pd.DataFrame({"clip_id": sorted(TRUTH)}),
                  provenance("test", 1))
    return res, _fold(res, "ref", "fineclipper", REF, summary=True), _fold(res, "other", "dferclip", OTHER,
                                                                           summary=True)


def _cards(out: Path, key: str) -> list[dict]:
    text = (out / g.GALLERY_DIR / key / g.CARDS_FILE).read_text(encoding="utf-8")
    return json.loads(text[len(f"window.dferCards({json.dumps(key)},"):-3])


def test_agreement_counts_the_2x2_table_by_hand() -> None:
    counts = gp.agreement(_preds(OTHER), _preds(REF))
    p = 2 * sum(math.comb(4, k) for k in (0, 1)) / 2 ** 4
    assert counts == {"common": 8, "agree": 3, "both_right": 2, "only_this": 1, "only_ref": 3, "both_wrong": 2,
                      "mcnemar_p": pytest.approx(p), "only_in_this": 1, "only_in_ref": 1}
    assert p == 0.625
    # the same two runs seen from the other side: the off-diagonal counts and the one-side clips swap
    swapped = gp.agreement(_preds(REF), _preds(OTHER))
    assert (swapped["only_this"], swapped["only_ref"], swapped["only_in_this"], swapped["only_in_ref"]) == (3, 1, 1, 1)
    # no clip only one got right: no test
    same = gp.agreement(_preds(REF), _preds(REF))
    assert same["mcnemar_p"] is None and (same["common"], same["agree"], same["only_in_ref"]) == (9, 9, 0)
    assert gp.pair_text(counts, "DFER-CLIP", "FineCLIPER") == HEADER
    dup = pd.concat([_preds(OTHER), _preds(OTHER).head(1)])
    with pytest.raises(ValueError, match="reference predictions: clip 'c1' has more than one prediction"):
        gp.agreement(_preds(OTHER), dup)


def test_card_text_for_a_known_pair_and_disagreements_first() -> None:
    joined = gp.join_reference(_preds(OTHER), _preds(REF))
    rows = {r.clip_id: r for r in joined.itertuples(index=False)}
    assert gp.card_pair_text(rows["c5"], LABELS, "DFER-CLIP", "FineCLIPER") == "DFER-CLIP: angry 0.41 | FineCLIPER: happy 0.62"
    assert gp.card_pair(rows["c8"], LABELS, "DFER-CLIP", "FineCLIPER") == {
        "pair": "DFER-CLIP: sad 0.33 | FineCLIPER: not evaluated", "vs": None, "dis": False}
    assert gp.card_pair(rows["c3"], LABELS, "DFER-CLIP", "FineCLIPER") == {
        "pair": "DFER-CLIP: happy 0.45 | FineCLIPER: angry 0.40", "vs": {"p": A, "c": 0.4, "ok": True}, "dis": True}
    assert sorted(joined.loc[joined[gp.DISAGREE], "clip_id"]) == ["c10", "c3", "c4", "c5", "c9"]
    # disagreements (wrong first, then by confidence), then the rest (wrong first, then by confidence)
    assert g.select_cards(joined, None)["clip_id"].tolist() == ["c9", "c10", "c5", "c3", "c4", "c6", "c8", "c2", "c1"]
    assert g.select_cards(joined, 3)["clip_id"].tolist() == ["c9", "c10", "c5"]
    assert gp.DISAGREE in g.select_cards(joined, 3).columns and "_agree" not in g.select_cards(joined, 3).columns


def test_labels_name_methods_or_runs() -> None:
    assert gp.side_labels({"method": "dferclip"}, {"method": "fineclipper"}, "b", "a") == ("DFER-CLIP", "FineCLIPER")
    # one method twice, or a method not recorded: the run names tell them apart
    assert gp.side_labels({"method": "cliper"}, {"method": "cliper"}, "b", "a") == ("b", "a")
    assert gp.side_labels({}, {"method": "cliper"}, "b", "a") == ("b", "a")


def test_gallery_compares_each_card_and_counts_in_the_header(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    res, ref_m, other_m = two_runs
    out = tmp_path / "report"
    built = g.build_gallery(res, [ref_m, other_m], out, max_cards=None, embed_max=4, reference="ref")
    assert built["built"] == 2 and [t for t, _ in built["pairs"]] == ["ds / other / fold-1"]
    other = json.loads((out / g.GALLERY_DIR / "ds.other.fold-1" / g.FOLD_FILE).read_text())
    assert other["pair"] == {"reference": "ref", "ref_key": "ds.ref.fold-1", "label": "DFER-CLIP",
                             "ref_label": "FineCLIPER", "common": 8, "agree": 3, "both_right": 2, "only_this": 1,
                             "only_ref": 3, "both_wrong": 2, "mcnemar_p": 0.625, "only_in_this": 1,
                             "only_in_ref": 1, "text": HEADER}
    # the reference's own fold is not compared (it is what the others are compared with)
    assert json.loads((out / g.GALLERY_DIR / "ds.ref.fold-1" / g.FOLD_FILE).read_text())["pair"] is None
    assert all("pair" not in c for c in _cards(out, "ds.ref.fold-1"))
    cards = _cards(out, "ds.other.fold-1")
    assert [c["id"] for c in cards] == ["c9", "c10", "c5", "c3", "c4", "c6", "c8", "c2", "c1"]
    by_id = {c["id"]: c for c in cards}
    assert by_id["c5"]["pair"] == "DFER-CLIP: angry 0.41 | FineCLIPER: happy 0.62" and by_id["c5"]["dis"] is True
    assert by_id["c1"]["pair"] == "DFER-CLIP: happy 0.55 | FineCLIPER: happy 0.62" and by_id["c1"]["dis"] is False
    assert by_id["c8"]["vs"] is None and by_id["c8"]["pair"].endswith("FineCLIPER: not evaluated")
    assert by_id["c4"]["vs"] == {"p": S, "c": 0.5, "ok": False}
    # the single-file gallery carries the same comparison (its first embed_max cards)
    data = (out / g.EMBED_FILE).read_text(encoding="utf-8")
    assert data.count("DFER-CLIP: angry 0.41 | FineCLIPER: happy 0.62") == 1
    assert "DFER-CLIP: happy 0.55" not in data  # c1 is the 9th card, beyond embed_max 4
    assert HEADER in data

    # the reference's predictions are an input of the compared fold: a change redraws it only
    assert g.build_gallery(res, [ref_m, other_m], out, max_cards=None, embed_max=4, reference="ref")["built"] == 0
    _fold(res, "ref", "fineclipper", {**REF, "c3": (H, 0.40)})
    again = g.build_gallery(res, [ref_m, other_m], out, max_cards=None, embed_max=4, reference="ref")
    assert (again["built"], again["kept"]) == (2, 0)  # ref's own fold changed too
    assert dict(again["pairs"])["ds / other / fold-1"]["agree"] == 4  # c3: both now predict happy
    # no reference, or only one run: no comparison, the gallery as before
    alone = g.build_gallery(res, [other_m], out, max_cards=None, reference="ref")
    assert alone["pairs"] == [] and all("pair" not in c for c in _cards(out, "ds.other.fold-1"))
    assert g.build_gallery(res, [ref_m, other_m], out, max_cards=None, reference=None)["pairs"] == []


def test_runs_with_different_labels_are_not_compared(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    res, ref_m, _ = two_runs
    other_m = _fold(res, "other", "dferclip", OTHER, labels=["sad", "happy", "angry"])
    built = g.build_gallery(res, [ref_m, other_m], tmp_path / "report", max_cards=None, reference="ref")
    (_, pair), = built["pairs"]
    assert pair["skipped"].startswith("its labels ['sad', 'happy', 'angry'] differ from ds.ref.fold-1's")
    assert pair["text"] == f"not compared with FineCLIPER: {pair['skipped']}"
    assert all("pair" not in c for c in _cards(tmp_path / "report", "ds.other.fold-1"))


def test_run_and_method_names_reach_the_page_as_inert_data(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    res, ref_m, _ = two_runs
    evil = "</script><script>alert(1)</script>&<!--"
    other_m = _fold(res, "other", evil, OTHER)
    out = tmp_path / "report"
    g.build_gallery(res, [ref_m, other_m], out, max_cards=None, reference="ref")
    cards_js = (out / g.GALLERY_DIR / "ds.other.fold-1" / g.CARDS_FILE).read_text(encoding="utf-8")
    assert "</script" not in cards_js.lower() and "<!--" not in cards_js
    assert {c["id"]: c["pair"] for c in _cards(out, "ds.other.fold-1")}["c5"] == f"{evil}: angry 0.41 | FineCLIPER: happy 0.62"
    page = (out / g.EMBED_FILE).read_text(encoding="utf-8")
    data = re.search(r"<script>(window\.DFER_INLINE=.*?)</script>", page, re.S).group(1)
    assert "<" not in data and evil.replace("<", "\\u003c") in data
    # the page's own script elements only: the data and the app
    assert page.lower().count("</script>") == 2


def test_report_tables_the_agreement(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    res, _, _ = two_runs
    out = tmp_path / "report"
    build_report(res, ["ds"], out, gallery_max=None, reference="ref")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "### Clip-level agreement with the reference" in md
    assert "| ds / other / fold-1 | ds.ref.fold-1 | 8 | 3 | 2 | 1 | 3 | 2 | 0.625 | 1 | 1 |" in md
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<h3>Clip-level agreement with the reference</h3>" in html and "<td>0.625</td>" in html
    # the reference is the first summary when none is named: "other" sorts first on disk
    build_report(res, ["ds"], out, gallery_max=None)
    assert "| ds / ref / fold-1 | ds.other.fold-1 | 8 | 3 | 2 | 3 | 1 | 2 | 0.625 | 1 | 1 |" in (
        out / "report.md").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- in a browser


def test_comparison_view_in_chromium(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from cdp import Browser, find_browser

    binary = find_browser()
    if binary is None:
        if os.environ.get("DFER_ALLOW_NO_BROWSER") == "1":
            pytest.skip("no Chromium (DFER_ALLOW_NO_BROWSER=1); `make browser` installs it")
        pytest.fail("no Chromium on PATH: run `make browser`, or set DFER_ALLOW_NO_BROWSER=1")
    res, ref_m, other_m = two_runs
    out = tmp_path / "report"
    g.build_gallery(res, [ref_m, other_m], out, max_cards=None, reference="ref")
    cards = "document.querySelectorAll('#cards .card')"
    with Browser(binary) as b:
        for page in (out / g.GALLERY_DIR / "index.html", out / g.EMBED_FILE):
            b.open(page.as_uri())
            b.wait_for(f"{cards}.length === 9")  # the reference's fold: not compared
            assert b.js("document.getElementById('pair-section').hidden") is True
            assert b.js("Array.from(document.querySelectorAll('option.paired')).every(o => o.disabled)")
            b.js("(() => { const s = document.getElementById('fold'); s.value = '1';"
                 " s.dispatchEvent(new Event('change')); })()")
            b.wait_for("document.getElementById('pair-summary').textContent.length > 0")
            assert b.js("document.getElementById('pair-summary').textContent") == HEADER
            assert b.js("document.getElementById('pair-section').hidden") is False
            cells = b.js("Object.fromEntries(Array.from(document.querySelectorAll('#pair-2x2 td'))"
                         ".map(td => [td.dataset.cell, td.textContent]))")
            assert cells == {"both_right": "2", "only_this": "1", "only_ref": "3", "both_wrong": "2"}
            b.wait_for(f"{cards}.length === 9")
            texts = b.js(f"Object.fromEntries(Array.from({cards}).map(c => [c.dataset.id,"
                         " c.querySelector('.pair').textContent]))")
            assert texts["c5"] == "DFER-CLIP: angry 0.41 | FineCLIPER: happy 0.62"
            assert texts["c8"] == "DFER-CLIP: sad 0.33 | FineCLIPER: not evaluated"
            # only the disagreements, then everything sorted disagreements first
            b.js("(() => { const s = document.getElementById('f-outcome'); s.value = 'disagree';"
                 " s.dispatchEvent(new Event('change')); })()")
            b.wait_for(f"{cards}.length === 5")
            assert sorted(b.js(f"Array.from({cards}).map(c => c.dataset.id)")) == ["c10", "c3", "c4", "c5", "c9"]
            b.click("#f-reset")
            b.js("(() => { const s = document.getElementById('f-sort'); s.value = 'disagree';"
                 " s.dispatchEvent(new Event('change')); })()")
            b.wait_for(f"{cards}.length === 9")
            assert b.js(f"Array.from({cards}).map(c => c.dataset.id)") == [
                "c9", "c10", "c5", "c3", "c4", "c8", "c2", "c1", "c6"]
        assert b.console == []
