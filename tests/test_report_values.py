"""The report's numbers and text, pinned by hand (issue 25).

``metrics.csv`` and ``summary.csv`` are checked column by column on folds whose UAR and WAR
spreads differ (the other report tests use identical spreads, so a ``war_std`` computed from
UAR passes them), with means and population standard deviations worked out in the docstrings.
The gallery gets clip ids, run names, captions and raw MLLM texts that try to end their
``<script>``, open an ``<img onerror=...>``, or break a JavaScript string with quotes and
``&``: every file is parsed back and the text must come out exactly as it went in, as data.
Both go through the public entry points (``build_report``, ``build_gallery``).
"""

from __future__ import annotations

import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfer.core.artifacts import provenance, write_parquet, write_safetensors
from dfer.core.paths import shard_file
from dfer.report.gallery import EMBED_FILE, GALLERY_DIR, build_gallery
from dfer.report.write import build_report


def _fold(path: Path, **fields: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields))
    return path


@pytest.fixture()
def spread(tmp_path: Path) -> Path:
    """Run ``a`` on ``toy``, three folds: UAR 0.50 / 0.70 / 0.90, WAR 0.60 / 0.65 / 0.70.
    A second run ``b`` whose metrics files name neither run nor trained_on nor fold."""
    res = tmp_path / "results"
    for fold, (uar, war, n) in enumerate([(0.5, 0.6, 10), (0.7, 0.65, 12), (0.9, 0.7, 14)], start=1):
        _fold(res / "toy" / "train" / "a" / f"fold-{fold}" / "metrics.json", dataset="toy", run="a",
              trained_on="toy", zero_shot=False, fold=fold, num_clips=n, uar=uar, war=war)
    _fold(res / "toy" / "train" / "b" / "fold-1" / "metrics.json", dataset="toy", uar=0.25, war=0.5)
    return res


def test_metrics_and_summary_tables_column_by_column(spread: Path, tmp_path: Path) -> None:
    """Means 0.70 (UAR) and 0.65 (WAR); population std over the 3 folds:
    UAR sqrt((0.2^2 + 0 + 0.2^2) / 3) = 0.163299, WAR sqrt((0.05^2 + 0 + 0.05^2) / 3) = 0.040825."""
    out = tmp_path / "report"
    tables = build_report(spread, ["toy"], out)
    per_fold = pd.read_csv(out / "metrics.csv")
    summary = pd.read_csv(out / "summary.csv")
    # the csv holds the returned table (compared as both read back from csv)
    returned = pd.read_csv(io.StringIO(tables["metrics"].to_csv(index=False)))
    pd.testing.assert_frame_equal(per_fold.drop(columns=["path"]).reset_index(drop=True),
                                  returned.drop(columns=["path"]).reset_index(drop=True))
    rows = per_fold.set_index(["run", "fold"])
    a2 = rows.loc[("a", 2)]
    assert (a2["trained_on"], a2["dataset"], bool(a2["zero_shot"]), a2["num_clips"]) == ("toy", "toy", False, 12)
    assert (a2["uar"], a2["war"]) == (0.7, 0.65)
    assert Path(a2["path"]) == spread / "toy" / "train" / "a" / "fold-2" / "metrics.json"
    # missing fields: the run is the folder above the fold's, trained_on the dataset, fold 0
    b = rows.loc[("b", 0)]
    assert (b["trained_on"], b["dataset"], bool(b["zero_shot"]), b["num_clips"], b["uar"], b["war"]) == (
        "toy", "toy", False, 0, 0.25, 0.5)
    assert sorted(zip(per_fold["run"], per_fold["fold"], strict=True)) == [("a", 1), ("a", 2), ("a", 3), ("b", 0)]

    s = summary.set_index("run")
    assert (s.loc["a", "trained_on"], s.loc["a", "dataset"], bool(s.loc["a", "zero_shot"])) == ("toy", "toy", False)
    assert s.loc["a", "folds"] == 3 and s.loc["b", "folds"] == 1
    assert s.loc["a", "uar"] == pytest.approx(0.7, abs=1e-12)
    assert s.loc["a", "war"] == pytest.approx(0.65, abs=1e-12)
    assert s.loc["a", "uar_std"] == pytest.approx(math.sqrt(0.08 / 3), abs=1e-12)
    assert s.loc["a", "war_std"] == pytest.approx(math.sqrt(0.005 / 3), abs=1e-12)
    assert (s.loc["b", "uar"], s.loc["b", "uar_std"], s.loc["b", "war"], s.loc["b", "war_std"]) == (0.25, 0, 0.5, 0)
    # shown as percentages, mean ± std, in both summaries
    md = (out / "report.md").read_text()
    # coverage: these metrics files predate the split counts, so only the evaluated clips are known
    assert "| a | toy | toy | False | 3 | 36 of ? | 70.00 ± 16.33 | 65.00 ± 4.08 |" in md
    assert "| b | toy | toy | False | 1 | 0 of ? | 25.00 ± 0.00 | 50.00 ± 0.00 |" in md
    html = (out / "report.html").read_text()
    assert "70.00 ± 16.33" in html and "65.00 ± 4.08" in html


def test_nan_folds_are_left_out_of_the_means(tmp_path: Path) -> None:
    """A fold whose UAR is NaN (a class without test clips) does not make the mean NaN."""
    res = tmp_path / "results"
    for fold, uar in ((1, 0.4), (2, float("nan")), (3, 0.8)):
        _fold(res / "toy" / "train" / "a" / f"fold-{fold}" / "metrics.json", dataset="toy", run="a", fold=fold,
              uar=uar, war=0.5)
    summary = build_report(res, ["toy"], tmp_path / "report")["summary"].set_index("run")
    assert summary.loc["a", "uar"] == pytest.approx(0.6) and summary.loc["a", "uar_std"] == pytest.approx(0.2)
    assert summary.loc["a", "folds"] == 3 and summary.loc["a", "war_std"] == 0


# ------------------------------------------------------------------------------ gallery
EVIL_ID = "c1</script><img src=x onerror=alert(1)>'\"&amp;"
EVIL_CAPTION = "</script><script>alert('cap')</script> <img src=x onerror=\"alert(2)\"> & \"quotes\" 'too' \u2028"
EVIL_RAW = "<!-- </SCRIPT> --> raw & 'raw' \"raw\""
EVIL_RUN = "r<img src=x onerror=alert(3)>&'\""


def _evil_results(root: Path) -> Path:
    """One dataset ``adv``, one shard, two clips (the adversarial id and ``plain``), frames
    and captions for both, one evaluated fold of run :data:`EVIL_RUN`."""
    res = root / "results"
    ids = [EVIL_ID, "plain"]
    meta = provenance("test", 1)
    write_parquet(shard_file(res, "adv", "manifest", "000", ".parquet"), pd.DataFrame({"clip_id": ids}), meta)
    rng = np.random.default_rng(0)
    write_safetensors(shard_file(res, "adv", "frames", "000", ".safetensors"),
                      {c: rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8) for c in ids}, meta)
    write_parquet(shard_file(res, "adv", "captions", "000", ".parquet"),
                  pd.DataFrame({"clip_id": ids, "caption": [EVIL_CAPTION, "plain words"],
                                "raw_text": [EVIL_RAW, "plain words"]}), meta)
    fold = res / "adv" / "train" / EVIL_RUN / "fold-1"
    preds = pd.DataFrame({"clip_id": ids, "label": ["x", "y"], "label_idx": [0, 1], "pred_idx": [1, 1],
                          "pred_label": ["y", "y"], "prob": np.float32([0.6, 0.9]), "correct": [False, True],
                          "probs": [np.float32([0.4, 0.6]), np.float32([0.1, 0.9])]})
    write_parquet(fold / "predictions.parquet", preds, provenance("evaluate", 1, labels=["x", "y"]))
    _fold(fold / "metrics.json", dataset="adv", run=EVIL_RUN, fold=1, uar=0.5, war=0.5, labels=["x<b>", "y&"],
          confusion_matrix=[[0, 1], [0, 1]])
    return res


class _Page(HTMLParser):
    """Elements and script texts of an HTML file, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def _js_call(text: str, name: str) -> list:
    """The arguments of ``name(...)`` in a data file, parsed as JSON (what JS would read)."""
    match = re.fullmatch(rf"{re.escape(name)}\((.*)\);\n", text, re.S)
    assert match, text[:200]
    return json.loads("[" + match.group(1) + "]")


def test_adversarial_text_reaches_the_gallery_as_inert_data(tmp_path: Path) -> None:
    res = _evil_results(tmp_path)
    out = tmp_path / "report"
    metrics = [res / "adv" / "train" / EVIL_RUN / "fold-1" / "metrics.json"]
    summary = build_gallery(res, metrics, out)
    assert summary["folds"] == 1 and summary["cards"] == 2
    key = f"adv.{EVIL_RUN}.fold-1"

    # the single-file gallery: one data script, nothing opened outside it, data round-trips
    page = _Page()
    page.feed((out / EMBED_FILE).read_text(encoding="utf-8"))
    page.close()
    assert "img" not in page.tags
    data = [s for s in page.scripts if s.startswith("window.DFER_INLINE=")]
    assert len(data) == 1 and page.tags.count("script") == 2  # the data and the app
    # written fold by fold: DFER_INLINE={}; DFER_INLINE[key]=[cards]; ...; DFER_FOLDS=[folds];
    match = re.fullmatch(r'window\.DFER_INLINE=\{\};window\.DFER_INLINE\[(".*?")\]=(\[.*\]);'
                         r"window\.DFER_FOLDS=(\[.*\]);", data[0], re.S)
    assert match, data[0][:200]
    assert "<" not in data[0]  # escaped as \u003c: no "</script" can end the element
    folds = json.loads(match.group(3))
    inline = {json.loads(match.group(1)): json.loads(match.group(2))}
    assert [f["key"] for f in folds] == [key] and folds[0]["run"] == EVIL_RUN
    assert folds[0]["title"] == f"adv / {EVIL_RUN} / fold-1" and folds[0]["labels"] == ["x<b>", "y&"]
    cards = {c["id"]: c for c in inline[key]}
    assert set(cards) == {EVIL_ID, "plain"}
    assert cards[EVIL_ID]["cap"] == EVIL_CAPTION and cards[EVIL_ID]["raw"] == EVIL_RAW
    assert cards[EVIL_ID]["img"].startswith("data:image/jpeg;base64,")

    # the directory gallery: data files are JavaScript calls whose arguments are plain JSON
    gallery = out / GALLERY_DIR
    (folds_js,) = _js_call((gallery / "folds.js").read_text(encoding="utf-8").replace("window.DFER_FOLDS=", "f(", 1)
                           .replace(";\n", ");\n"), "f")
    assert folds_js[0]["key"] == key and folds_js[0]["run"] == EVIL_RUN
    cards_js = (gallery / key / "cards.js").read_text(encoding="utf-8")
    got_key, got_cards = _js_call(cards_js, "window.dferCards")
    assert got_key == key
    by_id = {c["id"]: c for c in got_cards}
    assert by_id[EVIL_ID]["cap"] == EVIL_CAPTION and by_id[EVIL_ID]["raw"] == EVIL_RAW
    assert "</script" not in cards_js.lower() and "<!--" not in cards_js
    assert "\u2028" not in cards_js  # a raw line separator would end a JS string in old engines
    # image files are named by card number, never by clip id
    assert sorted(p.name for p in (gallery / key).iterdir()) == [
        "000000.jpg", "000001.jpg", "cards.js", "embed.json", "fold.json", "inputs.json", "noimg.json"]
    index = _Page()
    index.feed((gallery / "index.html").read_text(encoding="utf-8"))
    assert "img" not in index.tags and index.tags.count("script") == 2  # folds.js and the app


def test_adversarial_run_names_are_escaped_in_the_html_report(tmp_path: Path) -> None:
    res = _evil_results(tmp_path)
    out = tmp_path / "report"
    build_report(res, ["adv"], out)
    page = _Page()
    text = (out / "report.html").read_text(encoding="utf-8")
    page.feed(text)
    assert page.tags.count("img") == 3  # the three figures, nothing from the run name
    assert "r&lt;img src=x onerror=alert(3)&gt;&amp;" in text
    assert pd.read_csv(out / "metrics.csv")["run"].tolist() == [EVIL_RUN]
