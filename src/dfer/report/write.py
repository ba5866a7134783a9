"""Build the report folder: CSV tables, a Markdown and an HTML summary, and the figures.

``results/report/`` is what a researcher opens after a run and what ``snakemake --report``
embeds: ``metrics.csv`` (per fold), ``summary.csv`` (mean over folds), ``stages.csv``,
``report.md``, ``report.html``, three PNGs and the error-analysis gallery of every evaluated
fold (:mod:`dfer.report.gallery`: ``gallery/index.html``, and ``gallery.html`` in one file).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from html import escape
from pathlib import Path

import pandas as pd

from dfer.core.artifacts import write_bytes_atomic
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


def _markdown_table(frame: pd.DataFrame) -> str:
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
    return shown.drop(columns=["uar_std", "war_std", "evaluated", "listed"])


def _display_folds(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Per-fold rows as shown: ``coverage`` says ``evaluated of listed``."""
    return per_fold.drop(columns=["path", "evaluated", "listed"]).round(4)


def _display_stats(stats: pd.DataFrame) -> pd.DataFrame:
    shown = stats.copy()
    shown["face_rate"] = [_pct(v) for v in stats["face_rate"]]
    shown["frames"] = ["" if pd.isna(v) else str(int(v)) for v in stats["frames"]]
    for key in ("centre_crops", "one_frame_clips", "captions_cut_at_77"):
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


def build_report(results: Path, datasets: list[str], out: Path,
                 gallery_max: int | None = DEFAULT_GALLERY_MAX,
                 embed_max: int | None = DEFAULT_EMBED_MAX,
                 summaries: Sequence[Path] | None = None) -> dict[str, pd.DataFrame]:
    """Write every file of :data:`REPORT_FILES` into ``out``; returns the three tables.

    ``gallery_max`` / ``embed_max``: cards per fold in ``gallery/`` and in the single-file
    ``gallery.html`` (None: every clip), wrong and least confident clips first; the
    gallery folder is redrawn only for folds whose inputs changed.
    ``summaries``: the run summaries whose folds to report (the report job's declared
    inputs); None finds every evaluation under the datasets' ``train`` folders.
    """
    paths = find_metrics(results, datasets) if summaries is None else metrics_of_summaries(summaries)
    per_fold = read_metrics(paths)
    summary = summarize(per_fold)
    stats = collect_stage_stats(results, datasets)

    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "metrics.csv", per_fold.to_csv(index=False).encode())
    write_bytes_atomic(out / "summary.csv", summary.to_csv(index=False).encode())
    write_bytes_atomic(out / "stages.csv", stats.to_csv(index=False).encode())
    plot_metrics(summary, out / "metrics.png")
    plot_stage_stats(stats, out / "stages.png")
    plot_confusion_grid(confusion_matrices(paths), out / "confusion.png")
    gallery = build_gallery(results, paths, out, max_cards=gallery_max, embed_max=embed_max)
    missing = missing_images_lines(gallery["no_images"], gallery["cards"])
    if missing:
        log.warning("%s", "\n".join(missing))

    shown_summary = _display_summary(summary)
    shown_stats = _display_stats(stats)
    notes = coverage_notes(per_fold)
    flag = (["**Below 100 % of the test split** (UAR / WAR of these folds are not over every "
             "clip the split lists; with `data.unscored_clips: wrong`, the default, the clips not "
             "scored count as wrong predictions):", "", *[f"- {n}" for n in notes], ""]
            if notes else ["Every fold was evaluated on its whole test split.", ""])
    md = [
        "# dfer report", "",
        f"Datasets: {', '.join(datasets)}. UAR / WAR in %, mean ± std over folds; `coverage`: "
        "test clips evaluated of those the split files list.", "",
        "## Results", "", _markdown_table(shown_summary), *flag,
        "## Per fold", "", _markdown_table(_display_folds(per_fold)),
        "## Stages", "", _markdown_table(shown_stats),
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
        "<h2>Results (UAR / WAR %, mean ± std over folds)</h2>",
        shown_summary.to_html(index=False, na_rep="", escape=True),
        ("<p><b>Below 100 % of the test split:</b></p><ul>"
         + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>") if notes else
        "<p>Every fold was evaluated on its whole test split.</p>",
        "<h2>Per fold</h2>", _display_folds(per_fold).to_html(index=False, na_rep=""),
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
