"""The report stage: metrics gathered across folds, stage statistics, figures and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dfer.cli import main
from dfer.core.artifacts import provenance, write_failures, write_parquet
from dfer.report.metrics_table import find_metrics, metrics_of_summaries, read_metrics, summarize
from dfer.report.write import REPORT_FILES, build_report

META = provenance("test", 1)


def _metrics(path: Path, *, dataset: str, fold: int, uar: float, war: float, run: str = "r",
             trained_on: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "dataset": dataset, "fold": fold, "run": run, "trained_on": trained_on or dataset,
        "zero_shot": trained_on not in (None, dataset), "uar": uar, "war": war, "num_clips": 10,
        "labels": ["a", "b"], "confusion_matrix": [[3, 1], [2, 4]],
    }))


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    res = tmp_path / "results"
    ds = res / "toy"
    _metrics(ds / "train" / "r" / "fold-1" / "metrics.json", dataset="toy", fold=1, uar=0.5, war=0.6)
    _metrics(ds / "train" / "r" / "fold-2" / "metrics.json", dataset="toy", fold=2, uar=0.7, war=0.8)
    _metrics(ds / "train" / "zs" / "metrics.json", dataset="toy", fold=0, uar=0.3, war=0.4,
             run="zs", trained_on="other")
    write_parquet(ds / "manifest" / "manifest.parquet",
                  pd.DataFrame({"clip_id": ["c1", "c2", "c3", "c4"]}), META)
    write_parquet(ds / "frames" / "shard-000.parquet",
                  pd.DataFrame({"clip_id": ["c1", "c2", "c3"], "face_found_frac": [1.0, 0.5, 0.0]}), META)
    write_failures(ds / "frames" / "shard-000.failures.parquet",
                   [{"clip_id": "c4", "stage": "decode", "source": "c4.mp4",
                     "error_type": "corrupt", "message": "c4.mp4: invalid data"}], META)
    write_parquet(ds / "landmarks" / "shard-000.parquet", pd.DataFrame({
        "clip_id": ["c1"] * 2 + ["c2"] * 2, "frame": [0, 1, 0, 1], "has_face": [True, True, True, False],
    }), META)
    write_failures(ds / "landmarks" / "shard-000.failures.parquet",
                   [{"clip_id": "c3", "stage": "landmarks", "source": "c3", "error_type": "no_face",
                     "message": "no face in any frame"}], META)
    return res


def test_report_reads_exactly_the_folds_its_run_summaries_name(results: Path) -> None:
    run = results / "toy" / "train" / "r"
    summary = run / "summary.json"  # the part of `dfer evaluate --summarize`'s output read here
    summary.write_text(json.dumps({"per_fold": [{"fold": 1, "uar": 0.5, "war": 0.6},
                                                {"fold": 2, "uar": 0.7, "war": 0.8}]}))
    _metrics(run / "fold-9" / "metrics.json", dataset="toy", fold=9, uar=0.1, war=0.1)  # a stray
    assert metrics_of_summaries([summary]) == [run / "fold-1" / "metrics.json",
                                               run / "fold-2" / "metrics.json"]
    out = results / "report"
    build_report(results, ["toy"], out, summaries=[summary])
    per_fold = pd.read_csv(out / "metrics.csv")
    assert sorted(per_fold["fold"]) == [1, 2]  # neither the stray fold nor the zero-shot run
    assert build_report(results, ["toy"], results / "r0", summaries=[])["metrics"].empty

    (run / "fold-2" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"summary.json averages fold 2, but .*fold-2"):
        metrics_of_summaries([summary])


def test_metrics_are_averaged_over_folds_per_run(results: Path) -> None:
    per_fold = read_metrics(find_metrics(results, ["toy"]))
    assert len(per_fold) == 3
    summary = summarize(per_fold).set_index("run")
    assert summary.loc["r", "folds"] == 2
    assert summary.loc["r", "uar"] == pytest.approx(0.6)
    assert summary.loc["r", "uar_std"] == pytest.approx(0.1)
    assert summary.loc["r", "war"] == pytest.approx(0.7)
    assert bool(summary.loc["zs", "zero_shot"]) is True
    assert summary.loc["zs", "trained_on"] == "other"


def test_report_files_and_stage_statistics(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    tables = build_report(results, ["toy"], out)
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = tables["stages"].set_index("stage")
    assert stats.loc["manifest", "clips_ok"] == 4
    assert stats.loc["decode", "clips_ok"] == 3
    assert stats.loc["decode", "clips_failed"] == 1
    assert stats.loc["decode", "failure_types"] == "corrupt: 1"
    # decode: clips with a face found (2 of 3), not the mean of face_found_frac (0.5)
    assert stats.loc["decode", "face_rate"] == pytest.approx(2 / 3)
    assert stats.loc["decode", "centre_crops"] == 1
    assert stats.loc["landmarks", "frames"] == 4
    assert stats.loc["landmarks", "face_rate"] == pytest.approx(0.75)
    assert stats.loc["landmarks", "failure_types"] == "no_face: 1"
    md = (out / "report.md").read_text()
    # evaluations written before the count of listed clips existed: "of ?", and flagged
    assert "| r | toy | toy | False | 2 | 20 of ? | 60.00 ± 10.00 | 70.00 ± 10.00 |" in md
    assert "- r on toy fold 1: evaluated 10 clips; how many the split lists was not recorded" in md
    # the gallery is linked; without predictions.parquet it lists no evaluation (tests/test_gallery.py)
    assert "[Every test clip of 0 evaluation(s)](gallery/index.html)" in md
    assert (out / "gallery" / "folds.js").read_text() == "window.DFER_FOLDS=[];\n"
    assert pd.read_csv(out / "summary.csv").shape[0] == 2


def test_report_is_byte_identical_when_rerun(results: Path, tmp_path: Path) -> None:
    build_report(results, ["toy"], tmp_path / "a")
    build_report(results, ["toy"], tmp_path / "b")
    for name in REPORT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_unreadable_metrics_file_is_named(results: Path) -> None:
    bad = results / "toy" / "train" / "r" / "fold-3" / "metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="fold-3/metrics.json"):
        read_metrics(find_metrics(results, ["toy"]))


def test_cli_prints_summary(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--results", str(results), "--datasets", "toy", "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "r toy: UAR 60.00 WAR 70.00 (2 folds, evaluated 20 of ?)" in text
    assert "zs other->toy: UAR 30.00 WAR 40.00 (1 fold, evaluated 10 of ?)" in text
    assert "  below 100 %: r on toy fold 1: evaluated 10 clips; how many the split lists was not " \
           "recorded" in text


def test_on_missing_skip_clips_are_absent_downstream_and_counted(tmp_path: Path) -> None:
    """A clip whose video is missing is left out of every manifest (so no stage sees it) and
    shows up in the report's manifest row as a failure of type missing_file."""
    from dfer.manifests import sync_dataset
    from dfer.report.stage_stats import stage_stats

    root = tmp_path / "data"
    (root / "videos").mkdir(parents=True)
    ids = ["a", "b", "c", "d"]
    lines = ["clip_id,path,label,fold"]
    for n, cid in enumerate(ids):
        if cid != "c":  # c is listed but its video is missing
            (root / "videos" / f"{cid}.mp4").write_bytes(cid.encode())
        lines.append(f"{cid},videos/{cid}.mp4,{('happiness', 'sadness')[n % 2]},1")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    definition = {"layout": "demo", "root": str(root), "split_files": [str(root / "manifest.csv")],
                  "num_shards": 3, "on_missing": "skip"}
    results = tmp_path / "results"
    shards = sync_dataset("toy", definition, results)

    folder = results / "toy" / "manifest"
    assert pd.read_parquet(folder / "manifest.parquet")["clip_id"].tolist() == ["a", "b", "d"]
    in_shards = [c for s in shards for c in pd.read_parquet(folder / f"shard-{s}.parquet")["clip_id"]]
    assert sorted(in_shards) == ["a", "b", "d"]  # what decode and every later stage read
    stats = {row["stage"]: row for row in stage_stats(results / "toy")}
    assert stats["manifest"]["clips_ok"] == 3 and stats["manifest"]["clips_failed"] == 1
    assert stats["manifest"]["failure_types"] == "missing_file: 1"
    # and the default (on_missing: error) refuses the same dataset, naming the clip's file
    from dfer.manifests import ManifestError

    with pytest.raises(ManifestError, match="c.mp4"):
        sync_dataset("toy", {**definition, "on_missing": "error"}, tmp_path / "strict")


def test_report_states_evaluated_n_of_m_and_flags_folds_below_100_percent(tmp_path: Path) -> None:
    """Issue 22: every row says how much of its test split it scored, in the numbers of
    metrics.json's ``test_clips`` (the evaluation log line and the gallery header use them too)."""
    res = tmp_path / "results"
    run = res / "toy" / "train" / "r"
    counts = {1: {"listed": 15, "evaluated": 13, "not_scored": 2, "unscored_clips": "wrong",
                  "lost": {"decode corrupt": 1, "landmarks no_face": 1},
                  "text": "evaluated 13 of 15 test clips (not scored: decode corrupt: 1, "
                          "landmarks no_face: 1; counted as wrong)"},
              2: {"listed": 14, "evaluated": 14, "not_scored": 0, "lost": {},
                  "unscored_clips": "wrong", "text": "evaluated 14 of 14 test clips"}}
    for fold, count in counts.items():
        _metrics(run / f"fold-{fold}" / "metrics.json", dataset="toy", fold=fold, uar=0.5, war=0.5)
        path = run / f"fold-{fold}" / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "test_clips": count,
                                    "num_clips": count["listed"]}))
    tables = build_report(res, ["toy"], tmp_path / "report")
    per_fold = tables["metrics"].set_index("fold")
    assert per_fold.loc[1, "coverage"] == "13 of 15 (86.7 %)"
    assert per_fold.loc[2, "coverage"] == "14 of 14"
    assert per_fold.loc[1, "not_scored"] == "decode corrupt: 1, landmarks no_face: 1 (counted as wrong)"
    assert tables["summary"].loc[0, "coverage"] == "27 of 29 (93.1 %)"
    md = (tmp_path / "report" / "report.md").read_text()
    assert ("- r on toy fold 1: evaluated 13 of 15 (86.7 %) test clips: not scored decode "
            "corrupt: 1, landmarks no_face: 1 (counted as wrong)") in md
    assert "fold 2:" not in md.split("## Per fold")[0]  # a complete fold is not flagged
    assert "| r | toy | toy | False | 2 | 27 of 29 (93.1 %) | 50.00 ± 0.00 | 50.00 ± 0.00 |" in md
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Below 100 % of the test split" in html and "86.7 %" in html


def test_stage_table_counts_one_frame_clips_and_captions_cut_at_77(tmp_path: Path) -> None:
    from dfer.report.stage_stats import stage_stats

    ds = tmp_path / "results" / "toy"
    write_parquet(ds / "frames" / "shard-000.parquet", pd.DataFrame({
        "clip_id": ["c1", "c2", "c3"], "face_found_frac": [1.0, 1.0, 1.0],
        "num_source_frames": [1, 40, 1]}), META)
    long = " ".join(["eye"] * 75) + "."  # 76 tokens + start and end = 78 > 77
    # one shard whose stage counted (the main env), one the vLLM env could not count
    write_parquet(ds / "captions" / "shard-000.parquet",
                  pd.DataFrame({"clip_id": ["c1"], "caption": ["The lips part."]}),
                  {**provenance("captions", 1), "captions_cut_at_77": 3})
    write_parquet(ds / "captions" / "shard-001.parquet",
                  pd.DataFrame({"clip_id": ["c2", "c3"], "caption": [long, "The eyes blink."]}),
                  {**provenance("captions", 1), "captions_cut_at_77": None})
    rows = {r["stage"]: r for r in stage_stats(ds)}
    assert rows["decode"]["one_frame_clips"] == 2
    assert rows["captions"]["captions_cut_at_77"] == 3 + 1
    assert rows["captions"]["one_frame_clips"] is None
