"""The report's Markdown and HTML text, line by line, and its table formatting (issue 25).

``build_report`` is run with its figures and gallery replaced by recorders (they have tests of
their own and take seconds), so every line it writes can be compared with text written out
here by hand, fast enough for a mutation run of ``dfer.report.write``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from dfer.report import write
from dfer.report.metrics_table import METRIC_COLUMNS, SUMMARY_COLUMNS
from dfer.report.stage_stats import STATS_COLUMNS
from dfer.report.write import (
    _display_folds,
    _display_stats,
    _display_summary,
    _pct,
    build_report,
    coverage_notes,
    markdown_table,
    missing_images_lines,
)


def test_percentages_and_markdown_tables() -> None:
    assert [_pct(None), _pct(float("nan")), _pct(0.5), _pct(0.123456), _pct(1)] == ["", "", "50.00", "12.35", "100.00"]
    assert markdown_table(pd.DataFrame(columns=["a"])) == "_none_\n"
    frame = pd.DataFrame({"a": [1, None], "b": ["x", "y"]})
    assert markdown_table(frame) == "| a | b |\n|---|---|\n| 1.0 | x |\n|  | y |\n"


def test_displayed_summary_folds_and_stages() -> None:
    summary = pd.DataFrame([{"run": "r", "trained_on": "d", "dataset": "d", "zero_shot": False, "folds": 2,
                             "evaluated": 9, "listed": 10, "coverage": "9 of 10 (90.0 %)",
                             "uar": 0.5, "uar_std": 0.0125, "war": 0.75, "war_std": None, "static": False}])
    shown = _display_summary(summary)
    # static only picks the table a row goes in: not shown
    assert shown.columns.tolist() == ["run", "trained_on", "dataset", "zero_shot", "folds", "coverage", "uar", "war"]
    assert shown.loc[0, "uar"] == "50.00 ± 1.25" and shown.loc[0, "war"] == "75.00 ± "
    assert summary.loc[0, "uar"] == 0.5  # the table given is left as it was
    # a still-image dataset's summary: WAR is its accuracy, and is named so
    still = _display_summary(summary.assign(static=True))
    assert still.columns.tolist() == ["run", "trained_on", "dataset", "zero_shot", "folds", "coverage", "uar",
                                      "accuracy"]
    assert still.loc[0, "accuracy"] == "75.00 ± "

    folds = pd.DataFrame([{"run": "r", "fold": 1, "evaluated": 3, "listed": 4, "coverage": "3 of 4",
                           "uar": 0.123456, "war": 2 / 3, "path": "p", "static": False}])
    assert _display_folds(folds).to_dict("records") == [
        {"run": "r", "fold": 1, "coverage": "3 of 4", "uar": 0.1235, "war": 0.6667}]
    assert _display_folds(folds.assign(static=True)).to_dict("records") == [
        {"run": "r", "fold": 1, "coverage": "3 of 4", "uar": 0.1235, "accuracy": 0.6667}]

    nan = float("nan")
    stats = pd.DataFrame([{"dataset": "d", "stage": "decode", "status": "ok", "shards": 2.0, "clips_ok": 4.0,
                           "clips_failed": 0.0, "face_rate": 0.98765, "frames": 120.0, "centre_crops": 2.0,
                           "one_frame_clips": nan, "still_images": 3.0, "captions_cut_at_77": 0.0},
                          {"dataset": "d", "stage": "manifest", "status": "ok", "shards": 1.0, "clips_ok": 6.0,
                           "clips_failed": 1.0, "face_rate": None, "frames": nan, "centre_crops": nan,
                           "one_frame_clips": 1.0, "still_images": nan, "captions_cut_at_77": nan},
                          {"dataset": "d", "stage": "parsing", "status": "not run", "shards": nan,
                           "clips_ok": nan, "clips_failed": nan, "face_rate": nan, "frames": nan,
                           "centre_crops": nan, "one_frame_clips": nan, "still_images": nan,
                           "captions_cut_at_77": nan}])
    shown = _display_stats(stats)
    assert shown.columns.tolist() == ["dataset", "stage", "status", "shards", "clips_ok", "clips_failed",
                                      "face_rate_%", "frames", "centre_crops", "one_frame_clips", "still_images",
                                      "captions_cut_at_77"]
    assert shown.drop(columns=["dataset", "stage"]).to_dict("records") == [
        {"status": "ok", "shards": "2", "clips_ok": "4", "clips_failed": "0", "face_rate_%": "98.77",
         "frames": "120", "centre_crops": "2", "one_frame_clips": "", "still_images": "3", "captions_cut_at_77": "0"},
        {"status": "ok", "shards": "1", "clips_ok": "6", "clips_failed": "1", "face_rate_%": "", "frames": "",
         "centre_crops": "", "one_frame_clips": "1", "still_images": "", "captions_cut_at_77": ""},
        # a stage that did not run: every count empty (not 0)
        {"status": "not run", "shards": "", "clips_ok": "", "clips_failed": "", "face_rate_%": "", "frames": "",
         "centre_crops": "", "one_frame_clips": "", "still_images": "", "captions_cut_at_77": ""}]


def test_coverage_notes_name_run_dataset_fold_and_cause() -> None:
    per_fold = pd.DataFrame([
        {"run": "r", "dataset": "d", "zero_shot": False, "fold": 1, "evaluated": 4, "listed": 4.0,
         "coverage": "4 of 4", "not_scored": ""},
        {"run": "r", "dataset": "d", "zero_shot": False, "fold": 2, "evaluated": 3, "listed": 4.0,
         "coverage": "3 of 4 (75.0 %)", "not_scored": "decode corrupt: 1 (counted as wrong)"},
        {"run": "z", "dataset": "e", "zero_shot": True, "fold": 0, "evaluated": 5, "listed": 6.0,
         "coverage": "5 of 6 (83.3 %)", "not_scored": ""},
        {"run": "o", "dataset": "d", "zero_shot": False, "fold": 3, "evaluated": 7, "listed": float("nan"),
         "coverage": "7 of ?", "not_scored": ""},
    ])
    assert coverage_notes(per_fold) == [
        "r on d fold 2: evaluated 3 of 4 (75.0 %) test clips: not scored decode corrupt: 1 (counted as wrong)",
        "z on e fold 0: evaluated 5 of 6 (83.3 %) clips",
        "o on d fold 3: evaluated 7 clips; how many the split lists was not recorded",
    ]


def test_missing_images_lines_group_by_cause() -> None:
    assert missing_images_lines([], 3) == []
    six = [("f1", f"c{i}", "no frames file") for i in range(6)]
    assert missing_images_lines([*six, ("f2", "x", "crop too small")], 9) == [
        "7 of 9 gallery card(s) have no images:",
        "- no frames file: 6 card(s) (f1/c0, f1/c1, f1/c2, f1/c3, f1/c4, ... (6 in all))",
        "- crop too small: 1 card(s) (f2/x)",
    ]
    assert missing_images_lines([("f", "a", "w")] * 5, 5)[1] == "- w: 5 card(s) (f/a, f/a, f/a, f/a, f/a)"


@pytest.fixture()
def stubbed(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Figures and gallery replaced: the arguments they get are recorded, the gallery says it
    showed 7 of 10 clips and lacked images of 2 cards."""
    calls: dict = {}

    def fig(name: str):  # noqa: ANN202
        def record(data, path: Path) -> None:  # noqa: ANN001
            calls[name] = (data, path)
            path.write_bytes(b"png")
        return record

    monkeypatch.setattr(write, "plot_metrics", fig("metrics"))
    monkeypatch.setattr(write, "plot_stage_stats", fig("stages"))
    monkeypatch.setattr(write, "plot_confusion_grid", fig("confusion"))

    def gallery(results, paths, out, max_cards, embed_max, reference=None, stages=None):  # noqa: ANN001, ANN202
        calls["gallery"] = (results, list(paths), out, max_cards, embed_max)
        calls["reference"], calls["gallery_stages"] = reference, stages
        return {"folds": 2, "cards": 7, "clips": 10, "not_shown": 3, "pairs": [],
                "no_images": [("a/fold-1", "c1", "no frames <file>"), ("a/fold-2", "c2", "crop 50% cut")]}

    monkeypatch.setattr(write, "build_gallery", gallery)
    return calls


def _metrics(res: Path, listed2: int = 10, uar2: float = 0.7) -> list[Path]:
    paths = []
    for fold, (uar, war, ev, listed, lost) in enumerate([(0.5, 0.6, 9, 10, {"decode corrupt": 1}),
                                                         (uar2, 0.7, 10, listed2, {})], start=1):
        path = res / "toy" / "train" / "a" / f"fold-{fold}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"run": "a", "dataset": "toy", "fold": fold, "num_clips": ev, "uar": uar,
                                    "war": war, "labels": ["x", "y"], "confusion_matrix": [[1, 0], [0, 1]],
                                    "test_clips": {"evaluated": ev, "listed": listed, "lost": lost}}))
        paths.append(path)
    return paths


def test_report_markdown_and_html_line_by_line(tmp_path: Path, stubbed: dict, caplog) -> None:  # noqa: ANN001
    res = tmp_path / "results"
    paths = _metrics(res, listed2=11)
    out = tmp_path / "nested" / "report"  # parents are made
    with caplog.at_level("WARNING", logger="dfer.report.write"):
        tables = build_report(res, ["toy", "none"], out, gallery_max=5, embed_max=7)
    assert [r.getMessage() for r in caplog.records if r.name == "dfer.report.write"] == [
        "2 of 7 gallery card(s) have no images:\n- no frames <file>: 1 card(s) (a/fold-1/c1)\n"
        "- crop 50% cut: 1 card(s) (a/fold-2/c2)"]
    assert set(tables) == {"metrics", "summary", "stages"}
    assert stubbed["gallery"] == (res, paths, out, 5, 7)
    # the tables without an index column
    assert (out / "metrics.csv").read_text().split("\n")[0] == ",".join(METRIC_COLUMNS)
    assert (out / "summary.csv").read_text().split("\n")[0] == ",".join(SUMMARY_COLUMNS)
    assert (out / "stages.csv").read_text().split("\n")[0] == ",".join(STATS_COLUMNS)
    assert stubbed["metrics"][1] == out / "metrics.png" and stubbed["stages"][1] == out / "stages.png"
    assert stubbed["metrics"][0].equals(tables["summary"]) and stubbed["stages"][0].equals(tables["stages"])
    (title, labels, matrix), = stubbed["confusion"][0][:1]
    assert stubbed["confusion"][1] == out / "confusion.png" and title == "a toy fold 1" and labels == ["x", "y"]
    assert len(stubbed["confusion"][0]) == 2
    assert pd.read_csv(out / "metrics.csv")["uar"].tolist() == [0.5, 0.7]
    assert pd.read_csv(out / "summary.csv")["uar"].tolist() == [pytest.approx(0.6)]
    # neither dataset has stage artifacts: each workflow stage of each is a "not run" row
    stages_csv = (out / "stages.csv").read_text().split("\n")
    assert stages_csv[0].startswith("dataset,stage,status,shards,")
    assert stages_csv[1:] == [f"{ds},{stage},not run" + "," * 11 for ds in ("toy", "none")
                              for stage in ("decode", "landmarks", "parsing", "captions")] + [""]

    # UAR 0.5 / 0.7: 60.00 ± 10.00; WAR 0.6 / 0.7: 65.00 ± 5.00; 19 of 21 evaluated (90.476 %)
    md = (out / "report.md").read_text().split("\n")
    assert md[:10] == [
        "# dfer report", "",
        "Datasets: toy, none. UAR / WAR in %, mean ± std over folds; `coverage`: test clips evaluated of "
        "those the split files list.", "",
        "## Results", "",
        "| run | trained_on | dataset | zero_shot | folds | coverage | uar | war |",
        "|---|---|---|---|---|---|---|---|",
        "| a | toy | toy | False | 2 | 19 of 21 (90.5 %) | 60.00 ± 10.00 | 65.00 ± 5.00 |",
        "",
    ]
    assert md[10:28] == [
        "**Below 100 % of the test split** (UAR / WAR of these folds are not over every clip the "
        "split lists; with `data.unscored_clips: wrong`, the default, the clips not scored count as "
        "wrong predictions):", "",
        "- a on toy fold 1: evaluated 9 of 10 (90.0 %) test clips: not scored decode corrupt: 1 "
        "(counted as wrong)",
        "- a on toy fold 2: evaluated 10 of 11 (90.9 %) test clips", "",
        "## Per fold", "",
        "| run | trained_on | dataset | zero_shot | fold | num_clips | coverage | not_scored | uar | war |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| a | toy | toy | False | 1 | 9 | 9 of 10 (90.0 %) | decode corrupt: 1 (counted as wrong) | 0.5 | 0.6 |",
        "| a | toy | toy | False | 2 | 10 | 10 of 11 (90.9 %) |  | 0.7 | 0.7 |", "",
        # no run summary on disk: the comparison section says there is nothing to compare
        "## Methods side by side", "", "_no in-domain run to compare_", "",
        "## Stages", "",
    ]
    not_run = ["| " + " | ".join([ds, stage, "not run"] + [""] * 11) + " |" for ds in ("toy", "none")
               for stage in ("decode", "landmarks", "parsing", "captions")]
    assert md[28:] == [
        "| dataset | stage | status | shards | clips_ok | clips_failed | failure_types | frames | face_rate_% | "
        "centre_crops | lost_by_class | one_frame_clips | still_images | captions_cut_at_77 |",
        "|" + "---|" * 14, *not_run, "",
        "![metrics](metrics.png)", "", "![stages](stages.png)", "", "![confusion](confusion.png)", "",
        "## Gallery", "",
        "[Every test clip of 2 evaluation(s)](gallery/index.html): face crops, overlays, captions, "
        "predictions; filter by class or click a confusion-matrix cell.", "",
        "3 of 10 test clips are not shown as cards (at most 5 per evaluation, wrong and least "
        "confident first; report.gallery_max: null or --gallery-max all shows every clip).", "",
        "2 of 7 gallery card(s) have no images:",
        "- no frames <file>: 1 card(s) (a/fold-1/c1)",
        "- crop 50% cut: 1 card(s) (a/fold-2/c2)", "",
    ]
    html = (out / "report.html").read_text()
    lines = html.split("\n")
    assert lines[:3] == ["<html><head><meta charset='utf-8'><title>dfer report</title></head><body>",
                         "<h1>dfer report</h1>", "<h2>Results (UAR / WAR %, mean ± std over folds)</h2>"]
    # pandas tables without an index column: the header row starts with the first column
    assert html.count("<th>run</th>") == 2 and "<th></th>" not in html
    assert "<td>60.00 ± 10.00</td>" in html
    assert ("<p><b>Below 100 % of the test split:</b></p><ul><li>a on toy fold 1: evaluated 9 of 10 (90.0 %) "
            "test clips: not scored decode corrupt: 1 (counted as wrong)</li><li>a on toy fold 2: evaluated "
            "10 of 11 (90.9 %) test clips</li></ul>\n<h2>Per fold</h2>\n") in html
    tail = lines[lines.index("<h2>Stages</h2>") - 1:]
    assert tail[0] == "<h2>Methods side by side</h2><p>No in-domain run to compare.</p>"
    assert html.count("<td>not run</td>") == 8  # 4 workflow stages x 2 datasets
    assert tail[-5:] == [
        "<img src='metrics.png'><img src='stages.png'><img src='confusion.png'>",
        "<h2>Gallery</h2><p><a href='gallery/index.html'>Every test clip of 2 evaluation(s)</a>: face "
        "crops, overlays, captions, predictions.</p>",
        "<p>3 of 10 test clips are not shown as cards (at most 5 per evaluation, wrong and least confident "
        "first; report.gallery_max: null or --gallery-max all shows every clip).</p>",
        "<p>2 of 7 gallery card(s) have no images:</p><ul><li>no frames &lt;file&gt;: 1 card(s) "
        "(a/fold-1/c1)</li><li>crop 50% cut: 1 card(s) (a/fold-2/c2)</li></ul>",
        "</body></html>",
    ]
    # built again into the same folder: the same files
    first = (out / "report.md").read_bytes()
    build_report(res, ["toy", "none"], out, gallery_max=5, embed_max=7)
    assert (out / "report.md").read_bytes() == first


def test_run_names_are_escaped_in_every_html_table(tmp_path: Path, stubbed: dict) -> None:
    res = tmp_path / "results"
    path = res / "toy" / "train" / "a" / "fold-1" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run": "<i>x</i>", "dataset": "toy", "fold": 1, "num_clips": 2, "uar": 0.5,
                                "war": 0.5, "test_clips": {"evaluated": 2, "listed": 2}}))
    build_report(res, ["toy"], tmp_path / "report")
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("&lt;i&gt;x&lt;/i&gt;") == 2 and "<i>x" not in html


def test_complete_report_says_so_and_reads_only_the_summaries_folds(tmp_path: Path, stubbed: dict,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    res = tmp_path / "results"
    paths = _metrics(res, uar2=float("nan"))
    paths[0].write_text(paths[0].read_text().replace('"listed": 10, "lost": {"decode corrupt": 1}',
                                                     '"listed": 9, "lost": {}'))
    summary = res / "toy" / "train" / "a" / "summary.json"
    summary.write_text(json.dumps({"per_fold": [{"fold": 2}]}))
    monkeypatch.setattr(write, "build_gallery", lambda *a, **k: {"folds": 1, "cards": 3, "clips": 3,
                                                                  "not_shown": 0, "no_images": [], "pairs": []})
    out = tmp_path / "report"
    tables = build_report(res, ["toy"], out, summaries=[summary])
    assert tables["metrics"]["fold"].tolist() == [2]  # fold 1 is on disk but not in the summary
    md = (out / "report.md").read_text()
    assert "\n\nEvery fold was evaluated on its whole test split.\n\n## Per fold\n" in md
    assert "not shown as cards" not in md and "have no images" not in md
    assert md.endswith("predictions; filter by class or click a confusion-matrix cell.\n")
    html = (out / "report.html").read_text()
    assert "\n<p>Every fold was evaluated on its whole test split.</p>\n<h2>Per fold</h2>\n" in html
    assert "not shown" not in html and "no images" not in html
    assert html.endswith("captions, predictions.</p>\n\n</body></html>")
    # fold 2's UAR is NaN: an empty cell in both per-fold tables, and no mean
    assert "| a | toy | toy | False | 2 | 10 | 10 of 10 |  |  | 0.7 |" in md
    assert "<td>10 of 10</td>\n      <td></td>\n      <td></td>\n      <td>0.7</td>" in html
    assert math.isnan(tables["summary"]["uar"].iloc[0]) and "<td>±</td>" in html


def _static_metrics(res: Path) -> None:
    """Two folds of a still-image dataset ``stills`` (metrics.json says static) by a run whose
    name is HTML; fold 2's UAR is NaN."""
    for fold, (uar, war) in enumerate([(0.5, 0.75), (float("nan"), 0.25)], start=1):
        path = res / "stills" / "train" / "s" / f"fold-{fold}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"run": "<i>s</i>", "dataset": "stills", "fold": fold, "num_clips": 4, "uar": uar,
                                    "war": war, "static": True, "labels": ["x", "y"],
                                    "confusion_matrix": [[1, 0], [0, 1]],
                                    "test_clips": {"evaluated": 4, "listed": 4, "lost": {}}}))


def test_still_image_datasets_get_their_own_tables_with_accuracy(tmp_path: Path, stubbed: dict) -> None:
    res = tmp_path / "results"
    _metrics(res)
    _static_metrics(res)
    out = tmp_path / "report"
    build_report(res, ["toy", "stills"], out)
    md = (out / "report.md").read_text()
    assert "test clips evaluated of those the split files list. Still-image datasets: UAR / accuracy.\n" in md
    order = ["\n## Results\n", "\n## Results: still-image datasets\n\nUAR / accuracy in %, mean ± std over folds",
             "\n## Per fold\n", "\n## Per fold: still-image datasets\n\n", "\n## Stages\n"]
    at = [md.index(h) for h in order]
    assert at == sorted(at)
    video, still = md[at[0]:at[1]], md[at[1]:at[2]]
    assert "| toy |" in video and "stills" not in video and "| war |" in video
    assert "| stills |" in still and "| accuracy |" in still and "| war |" not in still
    still_folds = md[at[3]:at[4]]
    assert still_folds.count("| <i>s</i> | stills |") == 2 and "| accuracy |" in still_folds
    assert "| index |" not in md
    assert ("\n## Results: still-image datasets\n\nUAR / accuracy in %, mean ± std over folds (accuracy: the "
            "share of test images predicted right, which WAR is); `coverage`: test images evaluated of those "
            "the label files list.\n\n| run |") in md
    html = (out / "report.html").read_text()
    h = ["<h2>Results (UAR / WAR %, mean ± std over folds)</h2>",
         "<h2>Results: still-image datasets (UAR / accuracy %, mean ± std over folds)</h2>",
         "<h2>Per fold</h2>", "<h3>Per fold: still-image datasets</h3>", "<h2>Stages</h2>"]
    at = [html.index(x) for x in h]
    assert at == sorted(at) and "<th>accuracy</th>" in html[at[1]:at[2]] and "<th>accuracy</th>" in html[at[3]:]
    assert "<th></th>" not in html and "<th>index</th>" not in html  # no index column
    assert "\n<h3>Per fold: still-image datasets</h3>\n<table" in html
    assert "<td>&lt;i&gt;s&lt;/i&gt;</td>" in html[at[1]:at[2]] and "<i>s" not in html[at[1]:at[2]]
    # fold 2's UAR is NaN: an empty cell in the still-image per-fold table
    assert "<td>4 of 4</td>\n      <td></td>\n      <td></td>\n      <td>0.25</td>" in html[at[3]:at[4]]


def test_a_report_of_still_image_datasets_only_has_no_video_tables(tmp_path: Path, stubbed: dict) -> None:
    res = tmp_path / "results"
    _static_metrics(res)
    out = tmp_path / "report"
    build_report(res, ["stills"], out)
    md = (out / "report.md").read_text()
    assert "\n## Results\n" not in md and "\n## Per fold\n" not in md
    assert "\n## Results: still-image datasets\n" in md and "\n## Per fold: still-image datasets\n" in md
    html = (out / "report.html").read_text()
    assert "<h2>Results (UAR" not in html and "<h2>Per fold</h2>" not in html
    assert "<h2>Results: still-image datasets" in html


def test_methods_side_by_side_reads_the_given_summaries_against_the_reference(tmp_path: Path,
                                                                              stubbed: dict) -> None:
    res = tmp_path / "results"
    _metrics(res)
    summaries = []
    for run, uar in (("a", 0.5), ("b", 0.6)):
        path = res / "toy" / "train" / run / "summary.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"run": run, "dataset": "toy", "per_fold": [
            {"fold": 1, "uar": uar, "war": 0.5}, {"fold": 2, "uar": uar, "war": 0.5}]}))
        summaries.append(path)
    out = tmp_path / "report"
    build_report(res, ["toy"], out, reference="b")  # every summary found: a and b
    md = (out / "report.md").read_text()
    assert "\n## Methods side by side\n" in md and "\n### Paired differences against `b`\n" in md
    html = (out / "report.html").read_text()
    assert "<h3>Paired differences against b</h3>" in html and "No in-domain run to compare" not in html
    build_report(res, ["toy"], out, summaries=summaries[:1])  # only a's summary given
    md = (out / "report.md").read_text()
    assert "\n### Paired differences against `a`\n" in md and "| b |" not in md.split("## Methods side by side")[1]
