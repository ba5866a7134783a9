"""Build the report folder: CSV tables, a Markdown and an HTML summary, and the figures.

``results/report/`` is what a researcher opens after a run and what ``snakemake --report``
embeds: ``metrics.csv`` (per fold), ``summary.csv`` (mean over folds), ``stages.csv``,
``report.md``, ``report.html``, three PNGs and the error-analysis gallery of every evaluated
fold (:mod:`dfer.report.gallery`: ``gallery/index.html``, and ``gallery.html`` in one file).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from html import escape
from pathlib import Path

import pandas as pd

from dfer.core.artifacts import write_bytes_atomic
from dfer.report.compare import (
    compare_html,
    compare_markdown,
    default_reference,
    find_summaries,
    load_runs,
)
from dfer.report.gallery import (
    DEFAULT_EMBED_MAX,
    DEFAULT_GALLERY_MAX,
    EMBED_FILE,
    GALLERY_DIR,
    build_gallery,
)
from dfer.report.metrics_table import (
    confusion_matrices,
    find_metrics,
    incomplete_folds,
    metrics_of_summaries,
    read_metrics,
    summarize,
)
from dfer.report.plots import plot_confusion_grid, plot_metrics, plot_stage_stats
from dfer.report.stage_stats import collect_stage_stats

log = logging.getLogger(__name__)

REPORT_FILES = (
    "metrics.csv", "summary.csv", "stages.csv", "report.md", "report.html",
    "metrics.png", "stages.png", "confusion.png", EMBED_FILE, f"{GALLERY_DIR}/index.html",
    f"{GALLERY_DIR}/folds.js",
)


def _pct(x: object) -> str:
    return "" if x is None or pd.isna(x) else f"{100 * float(x):.2f}"


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (empty cells for missing values)."""
    if frame.empty:
        return "_none_\n"
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def _display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    shown = summary.copy()
    for key in ("uar", "war"):
        shown[key] = [f"{_pct(m)} ± {_pct(s)}" for m, s in zip(summary[key], summary[f"{key}_std"], strict=True)]
    return _name_accuracy(shown.drop(columns=["uar_std", "war_std", "evaluated", "listed"]))


def _display_folds(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Per-fold rows as shown: ``coverage`` says ``evaluated of listed``."""
    return _name_accuracy(per_fold.drop(columns=["path", "evaluated", "listed"]).round(4))


def _name_accuracy(shown: pd.DataFrame) -> pd.DataFrame:
    """A table of still-image datasets names WAR ``accuracy`` (as their literature does); the
    ``static`` column only says which table a row belongs in, and is not shown."""
    static = bool(len(shown)) and bool(shown["static"].all())
    shown = shown.drop(columns=["static"])
    return shown.rename(columns={"war": "accuracy"}) if static else shown


def split_static(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(video rows, still-image rows)`` of a metrics or summary table."""
    if frame.empty:
        return frame, frame
    static = frame["static"].astype(bool)
    return frame[~static].reset_index(drop=True), frame[static].reset_index(drop=True)


def _display_stats(stats: pd.DataFrame) -> pd.DataFrame:
    shown = stats.copy()
    shown["face_rate"] = [_pct(v) for v in stats["face_rate"]]
    shown["frames"] = ["" if pd.isna(v) else str(int(v)) for v in stats["frames"]]
    # counts: whole numbers, empty where a stage did not run (its row has no counts)
    for key in ("shards", "clips_ok", "clips_failed", "centre_crops", "one_frame_clips",
                "still_images", "captions_cut_at_77"):
        shown[key] = ["" if pd.isna(v) else str(int(v)) for v in stats[key]]
    return shown.rename(columns={"face_rate": "face_rate_%"})


def _not_shown(gallery: dict, cap: int | None) -> str:
    """The report's line on the gallery's card limit (only when it hid clips)."""
    return (f"{gallery['not_shown']} of {gallery['clips']} test clips are not shown as cards "
            f"(at most {cap} per evaluation, wrong and least confident first; "
            "report.gallery_max: null or --gallery-max all shows every clip).")


def coverage_notes(per_fold: pd.DataFrame) -> list[str]:
    """One line per evaluation that did not score its whole split (the report's flag)."""
    notes = []
    for row in incomplete_folds(per_fold).itertuples(index=False):
        why = f": not scored {row.not_scored}" if row.not_scored else ""
        what = "test clips" if not row.zero_shot else "clips"
        count = (f"evaluated {row.coverage} {what}" if not pd.isna(row.listed)
                 else f"evaluated {row.evaluated} clips; how many the split lists was not recorded")
        notes.append(f"{row.run} on {row.dataset} fold {row.fold}: {count}{why}")
    return notes


def missing_images_lines(no_images: Sequence[tuple[str, str, str]], cards: int) -> list[str]:
    """``N of M cards have no images`` and one line per cause with its cards: the gallery
    never drops a card's images without saying so (empty when every card has its images)."""
    if not no_images:
        return []
    causes: dict[str, list[str]] = {}
    for fold, clip_id, why in no_images:
        causes.setdefault(why, []).append(f"{fold}/{clip_id}")
    lines = [f"{len(no_images)} of {cards} gallery card(s) have no images:"]
    for why, which in causes.items():
        shown = ", ".join(which[:5]) + (f", ... ({len(which)} in all)" if len(which) > 5 else "")
        lines.append(f"- {why}: {len(which)} card(s) ({shown})")
    return lines


#: the columns of the clip-level comparison table (:func:`agreement_table`)
AGREEMENT_COLUMNS = ["evaluation", "reference", "both evaluated", "same class", "both right",
                     "only this right", "only reference right", "both wrong", "exact McNemar p",
                     "this run only", "reference only"]


def agreement_table(pairs: Sequence[tuple[str, dict]]) -> pd.DataFrame:
    """One row per gallery fold compared with the reference run: the clip-level counts of
    :func:`dfer.report.gallery_pairs.agreement` (clips one side evaluated: the last two)."""
    rows = []
    for title, p in pairs:
        if p.get("skipped"):
            rows.append({"evaluation": title, "reference": p["ref_key"], "both evaluated": f"not compared: {p['skipped']}"})
            continue
        rows.append({"evaluation": title, "reference": p["ref_key"], "both evaluated": p["common"],
                     "same class": p["agree"], "both right": p["both_right"], "only this right": p["only_this"],
                     "only reference right": p["only_ref"], "both wrong": p["both_wrong"],
                     "exact McNemar p": "" if p["mcnemar_p"] is None else f"{p['mcnemar_p']:.3g}",
                     "this run only": p["only_in_this"], "reference only": p["only_in_ref"]})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


#: what the agreement table is, under its heading
AGREEMENT_NOTE = ("Clip by clip, each evaluation against the reference run's evaluation of the same "
                  "fold: test clips both evaluated, on how many they predict the same class, and who "
                  "got them right (the counts McNemar's test uses; its exact p treats clips as "
                  "independent). Clips only one run evaluated are counted in the last two columns, "
                  "not in the others. The gallery shows both predictions on each card.")


def build_report(results: Path, datasets: list[str], out: Path,
                 gallery_max: int | None = DEFAULT_GALLERY_MAX,
                 embed_max: int | None = DEFAULT_EMBED_MAX,
                 summaries: Sequence[Path] | None = None,
                 reference: str | None = None,
                 stages: Mapping[str, Collection[str]] | None = None) -> dict[str, pd.DataFrame]:
    """Write every file of :data:`REPORT_FILES` into ``out``; returns the three tables.

    ``gallery_max`` / ``embed_max``: cards per fold in ``gallery/`` and in the single-file
    ``gallery.html`` (None: every clip), wrong and least confident clips first; the
    gallery folder is redrawn only for folds whose inputs changed.
    ``summaries``: the run summaries whose folds to report (the report job's declared
    inputs); None finds every evaluation under the datasets' ``train`` folders.
    ``reference``: the run the "Methods side by side" section pairs every other run against
    (None: the first run summary, i.e. the config's first run).
    ``stages``: dataset -> the stage folders to read (the report job's declared inputs; the
    stage table says "not run" for the others, and the gallery cards do without them);
    None reads every stage folder there is.
    """
    paths = find_metrics(results, datasets) if summaries is None else metrics_of_summaries(summaries)
    per_fold = read_metrics(paths)
    summary = summarize(per_fold)
    stats = collect_stage_stats(results, datasets, stages)
    runs = load_runs(find_summaries(results, datasets) if summaries is None else summaries)

    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "metrics.csv", per_fold.to_csv(index=False).encode())
    write_bytes_atomic(out / "summary.csv", summary.to_csv(index=False).encode())
    write_bytes_atomic(out / "stages.csv", stats.to_csv(index=False).encode())
    plot_metrics(summary, out / "metrics.png")
    plot_stage_stats(stats, out / "stages.png")
    plot_confusion_grid(confusion_matrices(paths), out / "confusion.png")
    gallery = build_gallery(results, paths, out, max_cards=gallery_max, embed_max=embed_max,
                            reference=reference or default_reference(runs), stages=stages)
    missing = missing_images_lines(gallery["no_images"], gallery["cards"])
    if missing:
        log.warning("%s", "\n".join(missing))

    agreement = agreement_table(gallery["pairs"])
    video_summary, static_summary = split_static(summary)
    video_folds, static_folds = split_static(per_fold)
    shown_summary = _display_summary(video_summary)
    shown_stats = _display_stats(stats)
    # still-image datasets: their own tables, WAR named accuracy (UAR / accuracy)
    # the video tables are left out of a report on still-image datasets only
    video = bool(len(video_summary)) or not len(static_summary)
    static_md: list[str] = []
    static_folds_md: list[str] = []
    static_html: list[str] = []
    if len(static_summary):
        shown_static = _display_summary(static_summary)
        shown_static_folds = _display_folds(static_folds)
        static_md = ["## Results: still-image datasets", "",
                     "UAR / accuracy in %, mean ± std over folds (accuracy: the share of test "
                     "images predicted right, which WAR is); `coverage`: test images evaluated "
                     "of those the label files list.", "", markdown_table(shown_static)]
        static_folds_md = ["## Per fold: still-image datasets", "",
                           markdown_table(shown_static_folds)]
        static_html = ["<h2>Results: still-image datasets (UAR / accuracy %, mean ± std over "
                       "folds)</h2>", shown_static.to_html(index=False, na_rep="", escape=True),
                       "<h3>Per fold: still-image datasets</h3>",
                       shown_static_folds.to_html(index=False, na_rep="")]
    notes = coverage_notes(per_fold)
    flag = (["**Below 100 % of the test split** (UAR / WAR of these folds are not over every "
             "clip the split lists; with `data.unscored_clips: wrong`, the default, the clips not "
             "scored count as wrong predictions):", "", *[f"- {n}" for n in notes], ""]
            if notes else ["Every fold was evaluated on its whole test split.", ""])
    md = [
        "# dfer report", "",
        f"Datasets: {', '.join(datasets)}. UAR / WAR in %, mean ± std over folds; `coverage`: "
        "test clips evaluated of those the split files list."
        + (" Still-image datasets: UAR / accuracy." if len(static_summary) else ""), "",
        *(["## Results", "", markdown_table(shown_summary)] if video else []),
        *static_md, *flag,
        *(["## Per fold", "", markdown_table(_display_folds(video_folds))] if video else []),
        *static_folds_md,
        *compare_markdown(runs, reference, markdown_table),
        *(["### Clip-level agreement with the reference", "", AGREEMENT_NOTE, "",
           markdown_table(agreement)] if len(agreement) else []),
        "## Stages", "", markdown_table(shown_stats),
        "![metrics](metrics.png)", "", "![stages](stages.png)", "", "![confusion](confusion.png)", "",
        "## Gallery", "",
        f"[Every test clip of {gallery['folds']} evaluation(s)]({GALLERY_DIR}/index.html): face crops,"
        " overlays, captions, predictions; filter by class or click a confusion-matrix cell.", "",
        *([_not_shown(gallery, gallery_max), ""] if gallery["not_shown"] else []),
        *([*missing, ""] if missing else []),
    ]
    write_bytes_atomic(out / "report.md", "\n".join(md).encode())
    html = "\n".join([
        "<html><head><meta charset='utf-8'><title>dfer report</title></head><body>",
        "<h1>dfer report</h1>",
        *(["<h2>Results (UAR / WAR %, mean ± std over folds)</h2>",
           shown_summary.to_html(index=False, na_rep="", escape=True)] if video else []),
        *static_html[:2],
        ("<p><b>Below 100 % of the test split:</b></p><ul>"
         + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>") if notes else
        "<p>Every fold was evaluated on its whole test split.</p>",
        *(["<h2>Per fold</h2>", _display_folds(video_folds).to_html(index=False, na_rep="")]
          if video else []),
        *static_html[2:],
        *compare_html(runs, reference),
        *(["<h3>Clip-level agreement with the reference</h3>", f"<p>{escape(AGREEMENT_NOTE)}</p>",
           agreement.to_html(index=False, na_rep="", escape=True)] if len(agreement) else []),
        "<h2>Stages</h2>", shown_stats.to_html(index=False, na_rep=""),
        "<img src='metrics.png'><img src='stages.png'><img src='confusion.png'>",
        f"<h2>Gallery</h2><p><a href='{GALLERY_DIR}/index.html'>Every test clip of {gallery['folds']}"
        " evaluation(s)</a>: face crops, overlays, captions, predictions.</p>",
        f"<p>{_not_shown(gallery, gallery_max)}</p>" if gallery["not_shown"] else "",
        *([f"<p>{escape(missing[0])}</p><ul>"
           + "".join(f"<li>{escape(line[2:])}</li>" for line in missing[1:]) + "</ul>"]
          if missing else []),
        "</body></html>",
    ])
    write_bytes_atomic(out / "report.html", html.encode())
    return {"metrics": per_fold, "summary": summary, "stages": stats}
