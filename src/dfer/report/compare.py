"""Methods side by side: ``dfer compare`` and the report's section of that name.

What a reviewer asks of "method X against method Y on the same data", read from the runs'
``summary.json`` files and the folds' ``metrics.json`` / ``train.json`` beside them:

* a methods x datasets table of UAR / WAR, mean ± std over folds, with the **published**
  figures beside ours, each labelled with where it comes from (:data:`PUBLISHED`);
* per-fold **paired differences** against a reference run on the same folds, with a paired
  t-test across folds (``scipy.stats.ttest_rel``). Folds are the unit: n is the number of
  folds both runs evaluated, so with DFEW / MAFW's 5 folds the test has 4 degrees of freedom
  and little power (a p above 0.05 does not show two methods equal), and a dataset with one
  official split (FERV39k) has no test at all;
* per-class recall side by side (the mean over folds, as ``summary.json``);
* tunable parameters and training time per run (``train.json`` of each fold).

Only in-domain evaluations are compared; zero-shot transfers keep their rows in the report's
results table. Std over folds is the population std (ddof 0), as ``summary.json`` and the
report's results table, so the numbers agree across the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dfer.core.paths import TRAIN_SUMMARY, fold_file_of_run


@dataclass(frozen=True)
class Published:
    """A published UAR / WAR (fractions) and where it was read."""

    uar: float
    war: float
    source: str


_FINECLIPER = "FineCLIPER paper (Chen et al., ACM MM 2024), Table 1; docs/paper_runs.md"
_DFERCLIP = "DFER-CLIP paper (Zhao & Patras, BMVC 2023), via ../shared/METHODS.md 1g"
_CLIPER = "CLIPER paper (Li et al., ICME 2024), via ../shared/METHODS.md 2g"
_S2D = ("S2D public README (Chen et al., TAFFC 2024), without oversampling (dfer does not "
        "oversample), via ../shared/METHODS.md 3g")
#: (method, dataset) -> the published figure. CLIPER reported no MAFW figure (METHODS.md 2g).
PUBLISHED: dict[tuple[str, str], Published] = {
    ("fineclipper", "dfew"): Published(0.6598, 0.7621, _FINECLIPER),
    ("fineclipper", "ferv39k"): Published(0.4522, 0.5398, _FINECLIPER),
    ("fineclipper", "mafw"): Published(0.4501, 0.5691, _FINECLIPER),
    ("dferclip", "dfew"): Published(0.5961, 0.7125, _DFERCLIP),
    ("dferclip", "ferv39k"): Published(0.4127, 0.5165, _DFERCLIP),
    ("dferclip", "mafw"): Published(0.3989, 0.5255, _DFERCLIP),
    ("cliper", "dfew"): Published(0.5756, 0.7084, _CLIPER),
    ("cliper", "ferv39k"): Published(0.4123, 0.5134, _CLIPER),
    ("s2d", "dfew"): Published(0.6182, 0.7603, _S2D),
    ("s2d", "ferv39k"): Published(0.4128, 0.5256, _S2D),
    ("s2d", "mafw"): Published(0.4186, 0.5737, _S2D),
}
# A3lign-DFER (issue 27): its figures as FineCLIPER's Table 1 lists them (METHODS.md 4g)
_A3LIGN = "A3lign-DFER (Tao et al., 2024) as listed in FineCLIPER's Table 1, via ../shared/METHODS.md 4g"
PUBLISHED.update({
    ("a3lign", "dfew"): Published(0.6409, 0.7420, _A3LIGN),
    ("a3lign", "ferv39k"): Published(0.4187, 0.5177, _A3LIGN),
    ("a3lign", "mafw"): Published(0.4207, 0.5324, _A3LIGN),
})
#: method -> the name the tables show
TITLES = {"fineclipper": "FineCLIPER", "dferclip": "DFER-CLIP", "cliper": "CLIPER", "s2d": "S2D"}
TITLES["a3lign"] = "A3lign-DFER"
#: the paired test's caveat, printed under its table
POWER_NOTE = ("Paired t-test across folds (scipy.stats.ttest_rel, two-sided), n = folds both runs "
              "evaluated: with 2-5 folds it has little power, so p > 0.05 does not show the "
              "methods equal; with one fold there is no test.")


@dataclass
class RunResult:
    """One run's in-domain evaluation of one dataset, fold by fold."""

    run: str
    method: str
    dataset: str
    labels: list[str]
    #: fold -> (UAR, WAR)
    folds: dict[int, tuple[float, float]]
    #: class -> mean recall over folds (None: no test clip of the class in any fold)
    per_class: dict[str, float | None] = field(default_factory=dict)
    #: tunable parameters (train.json's ``parameters.tunable_total``); None when not recorded
    tunable: int | None = None
    #: training seconds summed over the folds; None when a fold's train.json lacks them
    train_seconds: float | None = None
    summary: Path | None = None

    @property
    def title(self) -> str:
        return TITLES.get(self.method, self.method)

    def values(self, metric: str) -> np.ndarray:
        col = 0 if metric == "uar" else 1
        return np.array([v[col] for _, v in sorted(self.folds.items())], dtype=np.float64)


def _train_info(run_dir: Path, folds: Sequence[int]) -> tuple[int | None, float | None]:
    """(tunable parameters, training seconds summed over folds) from the folds' train.json."""
    tunable: int | None = None
    seconds = 0.0
    for fold in folds:
        path = fold_file_of_run(run_dir, fold, TRAIN_SUMMARY)
        if not path.exists():
            return tunable, None
        info = json.loads(path.read_text())
        if tunable is None:
            tunable = (info.get("parameters") or {}).get("tunable_total")
        if info.get("seconds") is None:
            return tunable, None
        seconds += float(info["seconds"])
    return tunable, seconds


def load_runs(summaries: Sequence[str | Path]) -> list[RunResult]:
    """The in-domain runs among ``summaries`` (train/{run}/summary.json), in the given order;
    zero-shot summaries are skipped. The run and dataset default to the summary's place
    (``results/{dataset}/train/{run}/summary.json``) where it does not name them. A summary
    without its per-fold figures is an error naming it."""
    runs = []
    for path in map(Path, summaries):
        s = json.loads(path.read_text())
        if s.get("zero_shot"):
            continue
        if not s.get("per_fold"):
            raise ValueError(f"{path}: no per_fold figures (written by an older dfer?)")
        folds = {int(row["fold"]): (_metric(row.get("uar")), _metric(row.get("war"))) for row in s["per_fold"]}
        tunable, seconds = _train_info(path.parent, sorted(folds))
        runs.append(RunResult(
            run=str(s.get("run") or path.parent.name), method=str(s.get("method") or "fineclipper"),
            dataset=str(s.get("dataset") or path.parent.parent.parent.name), labels=list(s.get("labels") or []), folds=folds,
            per_class=dict(s.get("per_class_accuracy") or {}), tunable=tunable,
            train_seconds=seconds, summary=path))
    return runs


def find_summaries(results: Path, datasets: Sequence[str]) -> list[Path]:
    """Every in-domain run summary under the datasets' train folders, in a stable order."""
    return sorted(p for ds in datasets for p in (Path(results) / ds / "train").glob("*/summary.json"))


# ------------------------------------------------------------------------------ tables


def _pct(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _metric(value: Any) -> float:
    """A fold's UAR or WAR; ``null`` (a fold with nothing scored) is NaN."""
    return math.nan if value is None else float(value)


def _mean_std(values: np.ndarray) -> str:
    # NaN folds (nothing scored) are left out, as summary.json's and the results table's means do
    return f"{100 * np.nanmean(values):.2f} ± {100 * np.nanstd(values):.2f}"


def scores(runs: Sequence[RunResult]) -> pd.DataFrame:
    """One row per (run, dataset): folds, UAR / WAR mean and std over folds (fractions)."""
    rows = [{"run": r.run, "method": r.method, "dataset": r.dataset, "folds": len(r.folds),
             "uar": float(np.nanmean(r.values("uar"))), "uar_std": float(np.nanstd(r.values("uar"))),
             "war": float(np.nanmean(r.values("war"))), "war_std": float(np.nanstd(r.values("war")))}
            for r in runs]
    return pd.DataFrame(rows, columns=["run", "method", "dataset", "folds", "uar", "uar_std",
                                       "war", "war_std"])


def methods_table(runs: Sequence[RunResult]) -> pd.DataFrame:
    """Methods x datasets: a row per run (ours: ``UAR / WAR``, mean ± std over folds, % ) and
    a row per method with the published figures (``[n]``: the source, :func:`source_notes`)."""
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    sources = list(dict.fromkeys(PUBLISHED[(m, d)].source for m in dict.fromkeys(r.method for r in runs)
                                 for d in datasets if (m, d) in PUBLISHED))
    rows = []
    for run in dict.fromkeys(r.run for r in runs):
        mine = {r.dataset: r for r in runs if r.run == run}
        first = next(iter(mine.values()))
        rows.append({"method": first.title, "run": run, "figures": "ours (mean ± std over folds)",
                     **{ds: (f"{_mean_std(mine[ds].values('uar'))} / {_mean_std(mine[ds].values('war'))}"
                             f" ({len(mine[ds].folds)} fold{'s' if len(mine[ds].folds) != 1 else ''})")
                        if ds in mine else "" for ds in datasets}})
    for method in dict.fromkeys(r.method for r in runs):
        cells = {ds: PUBLISHED.get((method, ds)) for ds in datasets}
        rows.append({"method": TITLES.get(method, method), "run": "",
                     "figures": "published",
                     **{ds: (f"{_pct(p.uar)} / {_pct(p.war)} [{sources.index(p.source) + 1}]"
                             if p else "not reported") for ds, p in cells.items()}})
    return pd.DataFrame(rows, columns=["method", "run", "figures", *datasets])


def source_notes(runs: Sequence[RunResult]) -> list[str]:
    """``[n] source`` of every published figure :func:`methods_table` shows, in its order."""
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    sources = list(dict.fromkeys(PUBLISHED[(m, d)].source for m in dict.fromkeys(r.method for r in runs)
                                 for d in datasets if (m, d) in PUBLISHED))
    return [f"[{i}] {s}" for i, s in enumerate(sources, 1)]


def paired_differences(runs: Sequence[RunResult], reference: str) -> pd.DataFrame:
    """Per dataset and metric, each run against ``reference`` on the folds both evaluated:
    the per-fold differences (run - reference, fractions), their mean, and the paired
    t-test's t, p and n (NaN where n < 2, or where every difference is the same so the test is
    undefined)."""
    from scipy.stats import ttest_rel

    by_key = {(r.run, r.dataset): r for r in runs}
    rows = []
    for r in runs:
        ref = by_key.get((reference, r.dataset))
        if r.run == reference or ref is None:
            continue
        common = sorted(set(r.folds) & set(ref.folds))
        for metric in ("uar", "war"):
            col = 0 if metric == "uar" else 1
            ours = np.array([r.folds[k][col] for k in common])
            theirs = np.array([ref.folds[k][col] for k in common])
            diffs = ours - theirs
            t = p = float("nan")
            if len(common) >= 2 and np.ptp(diffs) > 0:
                test = ttest_rel(ours, theirs)
                t, p = float(test.statistic), float(test.pvalue)
            rows.append({"dataset": r.dataset, "run": r.run, "reference": reference, "metric": metric,
                         "n": len(common), "folds": common, "differences": diffs.tolist(),
                         "mean_difference": float(diffs.mean()) if len(common) else float("nan"),
                         "t": t, "p": p})
    return pd.DataFrame(rows, columns=["dataset", "run", "reference", "metric", "n", "folds",
                                       "differences", "mean_difference", "t", "p"])


def per_class_table(runs: Sequence[RunResult], dataset: str) -> pd.DataFrame:
    """Per-class recall (%, mean over folds) of every run on ``dataset``, a column per run."""
    mine = [r for r in runs if r.dataset == dataset]
    labels = list(dict.fromkeys(lab for r in mine for lab in r.labels))
    return pd.DataFrame({"class": labels, **{r.run: [_pct(r.per_class.get(lab)) for lab in labels]
                                             for r in mine}})


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def cost_table(runs: Sequence[RunResult]) -> pd.DataFrame:
    """Tunable parameters and training time (all folds, and per fold) per run and dataset."""
    rows = [{"run": r.run, "method": r.title, "dataset": r.dataset,
             "tunable_parameters": "not recorded" if r.tunable is None else f"{r.tunable / 1e6:.2f} M",
             "training_time": _duration(r.train_seconds),
             "per_fold": _duration(None if r.train_seconds is None else r.train_seconds / len(r.folds))}
            for r in runs]
    return pd.DataFrame(rows, columns=["run", "method", "dataset", "tunable_parameters",
                                       "training_time", "per_fold"])


def _signed(x: float) -> str:
    return f"{100 * x:+.2f}"


def paired_display(paired: pd.DataFrame) -> pd.DataFrame:
    """The paired differences in percentage points, as the report shows them."""
    return pd.DataFrame({
        "dataset": paired["dataset"], "run": paired["run"], "reference": paired["reference"],
        "metric": paired["metric"].str.upper(), "n": paired["n"],
        "per-fold difference (pp)": [", ".join(f"{k}: {_signed(d)}" for k, d in zip(f, ds, strict=True))
                                     for f, ds in zip(paired["folds"], paired["differences"], strict=True)],
        "mean (pp)": [_signed(x) if not math.isnan(x) else "" for x in paired["mean_difference"]],
        "t": ["" if math.isnan(x) else f"{x:.3f}" for x in paired["t"]],
        "p": ["" if math.isnan(x) else f"{x:.3f}" for x in paired["p"]],
    }, columns=["dataset", "run", "reference", "metric", "n", "per-fold difference (pp)",
                "mean (pp)", "t", "p"])


def default_reference(runs: Sequence[RunResult]) -> str | None:
    """The first run given (the config's first run, in the report)."""
    return runs[0].run if runs else None


def compare_tables(runs: Sequence[RunResult], reference: str | None = None) -> dict[str, pd.DataFrame]:
    """Every table of the comparison: ``scores``, ``methods``, ``paired``, ``cost`` and
    ``per_class/<dataset>``. An unknown ``reference`` is an error naming the runs there are."""
    reference = reference or default_reference(runs)
    names = list(dict.fromkeys(r.run for r in runs))
    if runs and reference not in names:
        raise ValueError(f"reference run {reference!r} is not among the compared runs {names}")
    tables = {"scores": scores(runs), "methods": methods_table(runs),
              "paired": paired_differences(runs, reference) if runs else paired_differences([], ""),
              "cost": cost_table(runs)}
    for ds in dict.fromkeys(r.dataset for r in runs):
        tables[f"per_class/{ds}"] = per_class_table(runs, ds)
    return tables


def compare_markdown(runs: Sequence[RunResult], reference: str | None, table: Callable[[pd.DataFrame], str],
                     level: str = "##") -> list[str]:
    """The "Methods side by side" section as Markdown lines (``table``: DataFrame -> text)."""
    if not runs:
        return [f"{level} Methods side by side", "", "_no in-domain run to compare_", ""]
    reference = reference or default_reference(runs)
    t = compare_tables(runs, reference)
    lines = [f"{level} Methods side by side", "",
             "UAR / WAR in %: ours, mean ± std (population, over folds) of each run; published, "
             "as each paper reports it ([n]: source below). Published figures come from other "
             "code, preprocessing and model selection (DFER-CLIP's public code keeps the epoch "
             "best on the test fold; dfer keeps the last): they are context, not a paired "
             "comparison.", "", table(t["methods"]), *source_notes(runs), "",
             f"{level}# Paired differences against `{reference}`", "",
             "Per fold: run - reference in percentage points, on the folds both runs evaluated. "
             + POWER_NOTE, "", table(paired_display(t["paired"]))]
    for key, frame in t.items():
        if key.startswith("per_class/"):
            lines += [f"{level}# Per-class recall on {key.split('/', 1)[1]} (%, mean over folds)", "",
                      table(frame)]
    lines += [f"{level}# Tunable parameters and training time", "",
              "From each fold's train.json: `tunable_total` parameters, and training seconds summed "
              "over the folds (`per_fold`: their mean).", "", table(t["cost"])]
    return lines


def compare_html(runs: Sequence[RunResult], reference: str | None) -> list[str]:
    """The "Methods side by side" section as HTML fragments (the report's HTML page)."""
    from html import escape

    if not runs:
        return ["<h2>Methods side by side</h2><p>No in-domain run to compare.</p>"]
    reference = reference or default_reference(runs)
    t = compare_tables(runs, reference)
    out = ["<h2>Methods side by side (UAR / WAR %: ours, mean ± std over folds; published, "
           "[n]: source)</h2>", t["methods"].to_html(index=False, na_rep=""),
           "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in source_notes(runs)) + "</ul>",
           f"<h3>Paired differences against {escape(reference)}</h3><p>{escape(POWER_NOTE)}</p>",
           paired_display(t["paired"]).to_html(index=False, na_rep="")]
    for key, frame in t.items():
        if key.startswith("per_class/"):
            out += [f"<h3>Per-class recall on {escape(key.split('/', 1)[1])} (%, mean over folds)</h3>",
                    frame.to_html(index=False, na_rep="")]
    out += ["<h3>Tunable parameters and training time</h3>", t["cost"].to_html(index=False, na_rep="")]
    return out
