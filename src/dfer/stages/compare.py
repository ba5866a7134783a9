"""``dfer compare``: methods side by side from the runs' summaries (see :mod:`dfer.report.compare`):
UAR / WAR per method and dataset with the published figures beside them, paired differences
against a reference run with a paired t-test across folds, per-class recall, tunable parameters
and training time. Prints the comparison as Markdown; ``--out`` also writes its tables as CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dfer.core.artifacts import write_bytes_atomic
from dfer.report.compare import compare_markdown, compare_tables, find_summaries, load_runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summaries", nargs="+", type=Path, default=None, metavar="SUMMARY",
                        help="run summaries (results/DATASET/train/RUN/summary.json) to compare")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="results folder, with --datasets: compare every run found there")
    parser.add_argument("--datasets", nargs="+", default=None, help="dataset names under --results")
    parser.add_argument("--reference", default=None, metavar="RUN",
                        help="the run every other run is paired against (default: the first given)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write compare.md and the tables as CSV into this folder")


def run(args: argparse.Namespace) -> int:
    from dfer.report.write import markdown_table

    if args.summaries is None and not args.datasets:
        print("dfer compare: give --summaries, or --datasets (with --results)", file=sys.stderr)
        return 2
    summaries = args.summaries or find_summaries(args.results, args.datasets)
    missing = [str(p) for p in summaries if not Path(p).exists()]
    if missing:
        print(f"dfer compare: no such summary: {', '.join(missing)}", file=sys.stderr)
        return 1
    runs = load_runs(summaries)
    if not runs:
        print("dfer compare: no in-domain run summary to compare", file=sys.stderr)
        return 1
    try:
        tables = compare_tables(runs, args.reference)
    except ValueError as exc:
        print(f"dfer compare: {exc}", file=sys.stderr)
        return 2
    text = "\n".join(compare_markdown(runs, args.reference, markdown_table, level="#"))
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(args.out / "compare.md", text.encode())
        for key, frame in tables.items():
            name = key.replace("/", "_") + ".csv"
            write_bytes_atomic(args.out / name, frame.to_csv(index=False).encode())
    return 0
