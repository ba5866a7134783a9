"""``dfer report``: the metrics table across runs, folds and datasets, stage statistics and
plots, written to one folder (see :mod:`dfer.report.write`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dfer.core.integrity import DamagedArtifact, damaged_jobs, require
from dfer.core.paths import PARQUET, manifest_file, report_dir, shard_file_name
from dfer.core.sharding import shards_in
from dfer.report.gallery import DEFAULT_EMBED_MAX, DEFAULT_GALLERY_MAX
from dfer.report.write import build_report, coverage_notes


def _cap(text: str) -> int | None:
    """A card cap: a non-negative integer, or ``all`` / ``none`` for no cap."""
    if text.lower() in ("all", "none", "null"):
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'all', got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--datasets", nargs="+", required=True, help="dataset names under --results")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default RESULTS/report)")
    parser.add_argument("--summaries", nargs="*", type=Path, default=None, metavar="SUMMARY",
                        help="the run summaries (train/RUN/summary.json) whose folds to report; "
                             "the workflow passes its declared ones (default: every evaluation "
                             "found under the datasets' train folders)")
    parser.add_argument("--gallery-max", type=_cap, default=DEFAULT_GALLERY_MAX, metavar="N",
                        help="cards per evaluation in the gallery, wrong and least confident clips "
                             f"first; 'all' for every clip (default {DEFAULT_GALLERY_MAX})")
    parser.add_argument("--embed-max", type=_cap, default=DEFAULT_EMBED_MAX, metavar="N",
                        help="cards per fold in the single-file gallery.html that snakemake --report "
                             f"embeds (default {DEFAULT_EMBED_MAX})")


def check_tables(results: Path, datasets: list[str]) -> None:
    """The tables the report reads whole: each dataset's manifests and every shard job's
    index and failures table (``DamagedArtifact`` naming the first that is missing or
    damaged). A missing or damaged tensor shard costs only its cards' images, and the gallery
    says so on each card and in report.md."""
    for dataset in datasets:
        folder = manifest_file(results, dataset).parent
        shards = shards_in(folder, PARQUET)
        manifests = [manifest_file(results, dataset), *(folder / shard_file_name(s, PARQUET)
                                                          for s in shards)]
        require(p for p in manifests if p.exists())  # a dataset not synced: no statistics
        for _, bad in damaged_jobs(results, {dataset: shards}):
            for path, why in bad:
                if path.suffix == PARQUET:
                    raise DamagedArtifact(path, why)


def run(args: argparse.Namespace) -> int:
    check_tables(args.results, list(args.datasets))
    out = args.out or report_dir(args.results)
    try:
        tables = build_report(args.results, list(args.datasets), out,
                              gallery_max=args.gallery_max, embed_max=args.embed_max,
                              summaries=args.summaries)
    except OSError as exc:  # a full disk: name the file, no traceback (nothing half-written)
        where = f" {exc.filename}" if exc.filename else f" into {out}"
        print(f"dfer report: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    summary = tables["summary"]
    for row in summary.itertuples():
        where = f"{row.trained_on}->{row.dataset}" if row.zero_shot else row.dataset
        print(f"{row.run} {where}: UAR {100 * row.uar:.2f} WAR {100 * row.war:.2f} "
              f"({row.folds} fold{'s' if row.folds != 1 else ''}, evaluated {row.coverage})")
    for note in coverage_notes(tables["metrics"]):
        print(f"  below 100 %: {note}")
    print(f"report written to {out}")
    return 0
