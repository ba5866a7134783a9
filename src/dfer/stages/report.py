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
    parser.add_argument("--stages", nargs="*", default=None, metavar="DATASET/STAGE",
                        help="the stage folders the report may read, e.g. demo/frames (the "
                             "workflow passes the ones its rule declares; default: every folder "
                             "there is); the stage table says 'not run' for the others")
    parser.add_argument("--reference", default=None, metavar="RUN",
                        help="the run the 'Methods side by side' section pairs every other run "
                             "against (default: the first run summary)")


def stage_folders(items: list[str] | None, datasets: list[str]) -> dict[str, list[str]] | None:
    """``--stages`` as dataset -> stage folders (None: not given, every folder)."""
    if items is None:
        return None
    out: dict[str, list[str]] = {ds: [] for ds in datasets}
    for item in items:
        dataset, sep, folder = item.partition("/")
        if not sep or dataset not in out or not folder:
            raise ValueError(f"--stages {item!r}: expected DATASET/STAGE with DATASET one of {datasets}")
        out[dataset].append(folder)
    return out


def check_tables(results: Path, datasets: list[str], stages: dict[str, list[str]] | None = None) -> None:
    """The tables the report reads whole: each dataset's manifests and every shard job's
    index and failures table (``DamagedArtifact`` naming the first that is missing or
    damaged). A missing or damaged tensor shard costs only its cards' images, and the gallery
    says so on each card and in report.md. ``stages``: the stage folders to check (None: all)."""
    for dataset in datasets:
        folder = manifest_file(results, dataset).parent
        shards = shards_in(folder, PARQUET)
        manifests = [manifest_file(results, dataset), *(folder / shard_file_name(s, PARQUET)
                                                          for s in shards)]
        require(p for p in manifests if p.exists())  # a dataset not synced: no statistics
        for _, bad in damaged_jobs(results, {dataset: shards}, stages):
            for path, why in bad:
                if path.suffix == PARQUET:
                    raise DamagedArtifact(path, why)


def run(args: argparse.Namespace) -> int:
    datasets = list(args.datasets)
    try:
        stages = stage_folders(args.stages, datasets)
    except ValueError as exc:
        print(f"dfer report: {exc}", file=sys.stderr)
        return 2
    check_tables(args.results, datasets, stages)
    out = args.out or report_dir(args.results)
    try:
        tables = build_report(args.results, datasets, out,
                              gallery_max=args.gallery_max, embed_max=args.embed_max,
                              summaries=args.summaries, reference=args.reference, stages=stages)
    except ValueError as exc:  # an unknown --reference: name the runs there are
        print(f"dfer report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk: name the file, no traceback (nothing half-written)
        where = f" {exc.filename}" if exc.filename else f" into {out}"
        print(f"dfer report: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    summary = tables["summary"]
    for row in summary.itertuples():
        where = f"{row.trained_on}->{row.dataset}" if row.zero_shot else row.dataset
        war = "accuracy" if row.static else "WAR"  # still images: WAR is their accuracy
        print(f"{row.run} {where}: UAR {100 * row.uar:.2f} {war} {100 * row.war:.2f} "
              f"({row.folds} fold{'s' if row.folds != 1 else ''}, evaluated {row.coverage})")
    for note in coverage_notes(tables["metrics"]):
        print(f"  below 100 %: {note}")
    print(f"report written to {out}")
    return 0
