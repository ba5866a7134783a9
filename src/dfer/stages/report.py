"""``dfer report``: the metrics table across runs, folds and datasets, stage statistics and
plots, written to one folder (see :mod:`dfer.report.write`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dfer.report.write import build_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--datasets", nargs="+", required=True, help="dataset names under --results")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default RESULTS/report)")


def run(args: argparse.Namespace) -> int:
    out = args.out or args.results / "report"
    tables = build_report(args.results, list(args.datasets), out)
    summary = tables["summary"]
    for row in summary.itertuples():
        where = f"{row.trained_on}->{row.dataset}" if row.zero_shot else row.dataset
        print(f"{row.run} {where}: UAR {100 * row.uar:.2f} WAR {100 * row.war:.2f} ({row.folds} fold{'s' if row.folds != 1 else ''})")
    print(f"report written to {out}")
    return 0
