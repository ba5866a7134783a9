"""Methods side by side (``dfer compare`` and the report section): every number checked against
a hand computation on a 3-fold example.

Runs on dfew, folds 1-3 (fractions):

========  ================  ================
run       UAR per fold      WAR per fold
========  ================  ================
fc        .50 .60 .70       .60 .65 .70      (FineCLIPER, the reference)
dc        .55 .62 .78       .62 .64 .74      (DFER-CLIP)
cl        .52  -  .75       .61  -  .69      (CLIPER, fold 2 missing)
========  ================  ================

By hand: fc UAR mean 60.00, population std sqrt((.1^2 + 0 + .1^2) / 3) = 8.16; dc UAR mean 65.00,
std sqrt((.10^2 + .03^2 + .13^2) / 3) = 9.63; fc WAR 65.00 ± 4.08; dc WAR 66.67 ± 5.25.
dc - fc UAR: +5, +2, +8 pp; mean 5; sample std 3; t = 5 / (3 / sqrt 3) = 5 / sqrt 3 = 2.887 (df 2);
two-sided p for df 2 in closed form: 1 - t / sqrt(2 + t^2) = 0.1020.
cl - fc UAR on folds 1, 3: +2, +5 pp; t = 3.5 / (|2 - 5| / 2) = 2.333 (n = 2).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dfer.cli import main
from dfer.report.compare import (
    POWER_NOTE,
    compare_tables,
    load_runs,
    source_notes,
)

FOLDS = {
    "fc": ("fineclipper", {1: (0.50, 0.60), 2: (0.60, 0.65), 3: (0.70, 0.70)}),
    "dc": ("dferclip", {1: (0.55, 0.62), 2: (0.62, 0.64), 3: (0.78, 0.74)}),
    "cl": ("cliper", {1: (0.52, 0.61), 3: (0.75, 0.69)}),
}
PER_CLASS = {"fc": {"happiness": 0.8, "sadness": 0.4}, "dc": {"happiness": 0.9, "sadness": None},
             "cl": {"happiness": 0.5, "sadness": 0.25}}
SECONDS = {"fc": {1: 100.0, 2: 200.0, 3: 300.0}, "dc": {1: 50.0, 3: 70.0}, "cl": {1: 3600.0, 3: 3725.0}}
TUNABLE = {"fc": 1_234_567, "dc": 89_990_000, "cl": 86_260_000}


def write_study(results: Path, zero_shot: bool = True) -> list[Path]:
    """summary.json per run (the fields dfer.train.evaluate.summarize_folds writes) and each
    fold's train.json; dc's fold 2 has no train.json (its time is then not recorded)."""
    paths = []
    for run, (method, folds) in FOLDS.items():
        folder = results / "dfew" / "train" / run
        folder.mkdir(parents=True)
        summary = {"run": run, "method": method, "dataset": "dfew", "trained_on": "dfew",
                   "zero_shot": False, "labels": ["happiness", "sadness"],
                   "per_class_accuracy": PER_CLASS[run],
                   "per_fold": [{"fold": k, "uar": u, "war": w} for k, (u, w) in folds.items()]}
        (folder / "summary.json").write_text(json.dumps(summary))
        for k in folds:
            if k in SECONDS[run]:
                (folder / f"fold-{k}").mkdir()
                (folder / f"fold-{k}" / "train.json").write_text(json.dumps(
                    {"seconds": SECONDS[run][k], "parameters": {"tunable_total": TUNABLE[run]}}))
        paths.append(folder / "summary.json")
    if zero_shot:  # a zero-shot transfer is not an in-domain method comparison: skipped
        zs = results / "dfew" / "train" / "fc" / "zeroshot-from-mafw"
        zs.mkdir(parents=True)
        (zs / "summary.json").write_text(json.dumps({"run": "fc", "dataset": "dfew", "zero_shot": True,
                                                     "per_fold": [{"fold": 1, "uar": 0.1, "war": 0.1}]}))
        paths.append(zs / "summary.json")
    return paths


def test_methods_table_means_stds_and_published_figures(tmp_path: Path) -> None:
    runs = load_runs(write_study(tmp_path))
    assert [r.run for r in runs] == ["fc", "dc", "cl"]  # the zero-shot summary is left out
    t = compare_tables(runs, "fc")
    scores = t["scores"].set_index("run")
    assert scores.loc["dc", "uar"] == pytest.approx(0.65)
    assert scores.loc["dc", "uar_std"] == pytest.approx(math.sqrt((0.10**2 + 0.03**2 + 0.13**2) / 3))
    assert scores.loc["fc", "war_std"] == pytest.approx(math.sqrt(0.05**2 * 2 / 3))
    assert scores.loc["cl", "folds"] == 2
    methods = t["methods"]
    rows = {(r.method, r.figures.split(" ")[0]): r.dfew for r in methods.itertuples()}
    assert rows[("FineCLIPER", "ours")] == "60.00 ± 8.16 / 65.00 ± 4.08 (3 folds)"
    assert rows[("DFER-CLIP", "ours")] == "65.00 ± 9.63 / 66.67 ± 5.25 (3 folds)"
    assert rows[("CLIPER", "ours")] == "63.50 ± 11.50 / 65.00 ± 4.00 (2 folds)"
    # the published figures, each with its source: METHODS.md 1g / 2g, FineCLIPER's Table 1
    assert rows[("FineCLIPER", "published")] == "65.98 / 76.21 [1]"
    assert rows[("DFER-CLIP", "published")] == "59.61 / 71.25 [2]"
    assert rows[("CLIPER", "published")] == "57.56 / 70.84 [3]"


def test_paired_differences_and_t_test_by_hand(tmp_path: Path) -> None:
    t = compare_tables(load_runs(write_study(tmp_path)), "fc")
    paired = t["paired"].set_index(["run", "metric"])
    dc = paired.loc[("dc", "uar")]
    assert dc["n"] == 3 and dc["folds"] == [1, 2, 3]
    assert dc["differences"] == pytest.approx([0.05, 0.02, 0.08])
    assert dc["mean_difference"] == pytest.approx(0.05)
    assert dc["t"] == pytest.approx(5 / math.sqrt(3))
    assert dc["p"] == pytest.approx(1 - (5 / math.sqrt(3)) / math.sqrt(2 + 25 / 3))  # df 2, closed form
    # WAR by an independent tiny implementation: mean / (sample std / sqrt n)
    d = np.array([0.62 - 0.60, 0.64 - 0.65, 0.74 - 0.70])
    war = paired.loc[("dc", "war")]
    assert war["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(3)))
    # cl has no fold 2: paired on folds 1 and 3 only
    cl = paired.loc[("cl", "uar")]
    assert cl["n"] == 2 and cl["folds"] == [1, 3]
    assert cl["differences"] == pytest.approx([0.02, 0.05])
    assert cl["t"] == pytest.approx(0.035 / 0.015)
    assert ("fc", "uar") not in paired.index  # the reference is not paired with itself


def test_per_class_recall_and_cost_tables(tmp_path: Path) -> None:
    t = compare_tables(load_runs(write_study(tmp_path)), "fc")
    per_class = t["per_class/dfew"].set_index("class")
    assert per_class.loc["happiness"].tolist() == ["80.00", "90.00", "50.00"]
    assert per_class.loc["sadness"].tolist() == ["40.00", "", "25.00"]  # dc: no sadness clip
    cost = t["cost"].set_index("run")
    assert cost.loc["fc"].tolist() == ["FineCLIPER", "dfew", "1.23 M", "0:10:00", "0:03:20"]
    assert cost.loc["dc", "training_time"] == "not recorded"  # fold 2's train.json is missing
    assert cost.loc["cl"].tolist() == ["CLIPER", "dfew", "86.26 M", "2:02:05", "1:01:02"]


def test_one_fold_has_no_test_and_equal_differences_no_t(tmp_path: Path) -> None:
    """FERV39k has one official split: n = 1, no test; identical differences: t undefined."""
    study = write_study(tmp_path, zero_shot=False)
    runs = load_runs(study)
    runs[1].folds = {1: runs[1].folds[1]}
    runs[2].folds = {1: (0.55, 0.65), 3: (0.75, 0.75)}  # +5 pp on both folds
    paired = compare_tables(runs, "fc")["paired"].set_index(["run", "metric"])
    assert paired.loc[("dc", "uar"), "n"] == 1 and math.isnan(paired.loc[("dc", "uar"), "t"])
    assert paired.loc[("cl", "uar"), "mean_difference"] == pytest.approx(0.05)
    assert math.isnan(paired.loc[("cl", "uar"), "t"]) and math.isnan(paired.loc[("cl", "uar"), "p"])


def test_dfer_compare_cli_prints_and_writes_tables(tmp_path: Path, capsys) -> None:
    write_study(tmp_path / "results")
    out = tmp_path / "cmp"
    rc = main(["compare", "--results", str(tmp_path / "results"), "--datasets", "dfew",
               "--reference", "dc", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "# Methods side by side" in text and POWER_NOTE in text
    assert "Paired differences against `dc`" in text
    # fc - dc = -(dc - fc): -5, -2, -8 pp, mean -5.00, t = -2.887
    assert "| dfew | fc | dc | UAR | 3 | 1: -5.00, 2: -2.00, 3: -8.00 | -5.00 | -2.887 | 0.102 |" in text
    assert "[2] DFER-CLIP paper (Zhao & Patras, BMVC 2023), via ../shared/METHODS.md 1g" in text
    assert (out / "compare.md").read_text().strip() == text.strip()
    assert {p.name for p in out.glob("*.csv")} == {"scores.csv", "methods.csv", "paired.csv",
                                                    "cost.csv", "per_class_dfew.csv"}
    assert main(["compare", "--results", str(tmp_path / "results"), "--datasets", "dfew",
                 "--reference", "nope"]) == 2
    assert "reference run 'nope' is not among the compared runs ['cl', 'dc', 'fc']" in capsys.readouterr().err


def test_report_has_the_methods_section(tmp_path: Path) -> None:
    from dfer.report.write import build_report

    results = tmp_path / "results"
    summaries = write_study(results)
    for run, (_method, folds) in FOLDS.items():  # the report's own table reads metrics.json
        for k, (u, w) in folds.items():
            fold = results / "dfew" / "train" / run / f"fold-{k}"
            fold.mkdir(exist_ok=True)
            (fold / "metrics.json").write_text(json.dumps({
                "run": run, "dataset": "dfew", "fold": k, "uar": u, "war": w, "num_clips": 10,
                "labels": ["happiness", "sadness"], "confusion_matrix": [[5, 0], [0, 5]],
                "per_class_accuracy": {"happiness": 1.0, "sadness": 1.0}}))
    build_report(results, ["dfew"], tmp_path / "report", summaries=summaries[:3])
    md = (tmp_path / "report" / "report.md").read_text()
    section = md.split("## Methods side by side")[1].split("## Stages")[0]
    assert "| DFER-CLIP | dc | ours (mean ± std over folds) | 65.00 ± 9.63 / 66.67 ± 5.25 (3 folds) |" in section
    assert "Paired differences against `fc`" in section  # default: the first run summary
    assert "| dfew | dc | fc | UAR | 3 | 1: +5.00, 2: +2.00, 3: +8.00 | +5.00 | 2.887 | 0.102 |" in section
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Methods side by side" in html and "59.61 / 71.25 [2]" in html


def test_a_fold_with_nothing_scored_is_left_out_of_the_means(tmp_path: Path) -> None:
    """A fold whose UAR / WAR is null (no clip could be scored) does not turn the run's figures
    into NaN: the means and stds are over the other folds, as summary.json's are."""
    folder = tmp_path / "dfew" / "train" / "fc"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({
        "run": "fc", "method": "fineclipper", "dataset": "dfew", "zero_shot": False, "labels": ["happiness"],
        "per_fold": [{"fold": 1, "uar": 0.5, "war": 0.6}, {"fold": 2, "uar": None, "war": None},
                     {"fold": 3, "uar": 0.7, "war": 0.8}]}))
    [run] = load_runs([folder / "summary.json"])
    row = compare_tables([run], "fc")["scores"].iloc[0]
    assert (row["uar"], row["uar_std"], row["war"], row["war_std"]) == pytest.approx((0.6, 0.1, 0.7, 0.1))


def test_an_unknown_reference_run_is_a_config_error_before_any_job() -> None:
    """A misspelt ``report.reference`` stops the workflow when it is parsed, naming the key and
    the runs there are, rather than failing the report job after every fold trained."""
    import yaml

    from dfer.config_check import config_problem

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    schema = repo / "workflow" / "schemas" / "config.schema.yaml"
    config.setdefault("report", {})["reference"] = "demo_tiny"
    assert config_problem(config, schema) is None
    config["report"]["reference"] = "demo_tinny"
    problem = config_problem(config, schema)
    assert problem is not None and problem.startswith("config error at report.reference: ")
    assert "run 'demo_tinny' is not a key of train.runs (known: demo_tiny, fineclip_vitb16)" in problem


def test_a3lign_run_is_compared_with_its_published_figures(tmp_path: Path) -> None:
    """An A3lign-DFER run (issue 27) beside the study: its title, ours by hand (UAR .60 .62 .64:
    62.00 ± sqrt(2 x .02^2 / 3) = 1.63; WAR .70 .72 .74: 72.00 ± 1.63), its published DFEW
    figure from FineCLIPER's Table 1 (METHODS.md 4g: 64.09 / 74.20) with its own source note, and
    the paired test against fc: +10, +2, -6 pp, mean 2, sample std 8, t = 2 / (8 / sqrt 3)."""
    summaries = write_study(tmp_path, zero_shot=False)
    folder = tmp_path / "dfew" / "train" / "a3"
    folder.mkdir(parents=True)
    folds = {1: (0.60, 0.70), 2: (0.62, 0.72), 3: (0.64, 0.74)}
    (folder / "summary.json").write_text(json.dumps({
        "run": "a3", "method": "a3lign", "dataset": "dfew", "trained_on": "dfew", "zero_shot": False,
        "labels": ["happiness", "sadness"], "per_class_accuracy": {"happiness": 0.7, "sadness": 0.5},
        "per_fold": [{"fold": k, "uar": u, "war": w} for k, (u, w) in folds.items()]}))
    runs = load_runs([*summaries, folder / "summary.json"])
    t = compare_tables(runs, "fc")
    rows = {(r.method, r.figures.split(" ")[0]): r.dfew for r in t["methods"].itertuples()}
    assert rows[("A3lign-DFER", "ours")] == "62.00 ± 1.63 / 72.00 ± 1.63 (3 folds)"
    assert rows[("A3lign-DFER", "published")] == "64.09 / 74.20 [4]"
    notes = source_notes(runs)
    assert notes[3].startswith("[4] A3lign-DFER (Tao et al., 2024) as listed in FineCLIPER's Table 1")
    a3 = t["paired"].set_index(["run", "metric"]).loc[("a3", "uar")]
    assert a3["differences"] == pytest.approx([0.10, 0.02, -0.06])
    assert a3["t"] == pytest.approx(2 / (8 / math.sqrt(3)))
