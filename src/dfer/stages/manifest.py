"""``dfer manifest``: normalize one dataset's split files and write its shard manifests.

The pipeline does the same at parse time; this command is for checking a dataset by hand
(every problem of its split files at once) and for seeing what a dataset update changes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

import yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config/config.yaml", type=Path,
                        help="pipeline config with `results` and `dataset_defs` (default: %(default)s)")
    parser.add_argument("--dataset", required=True, help="dataset name (a key of dataset_defs)")
    parser.add_argument("--results", default=None,
                        help="results directory (default: `results` of the config)")


def _counts(title: str, counter: Counter, order: list | None = None) -> str:
    keys = order if order is not None else sorted(counter)
    return f"{title}: " + ", ".join(f"{k} {counter.get(k, 0)}" for k in keys)


def run(args: argparse.Namespace) -> int:
    from dfer.manifests import ManifestError, sync_report
    from dfer.pipeline import ensure_demo_data
    from dfer.sharding import shard_name

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    config = yaml.safe_load(args.config.read_text())
    defs = config.get("dataset_defs", {})
    if args.dataset not in defs:
        print(f"dfer manifest: dataset {args.dataset!r} is not in dataset_defs of {args.config} "
              f"(known: {', '.join(sorted(defs))})", file=sys.stderr)
        return 2
    definition = defs[args.dataset]
    if definition.get("generate_demo"):
        ensure_demo_data(definition)
    results = args.results or config["results"]
    try:
        report = sync_report(args.dataset, definition, results)
    except ManifestError as exc:
        print(f"dfer manifest: {exc}", file=sys.stderr)
        return 1
    build = report.build
    table = build.table
    print(f"dataset {build.dataset} (layout {build.layout}): {table.num_rows} clips, "
          f"{build.num_folds} fold(s), {build.num_shards} shard(s)")
    print(_counts("clips per label", Counter(table.column("label").to_pylist()), list(build.labels)))
    print(_counts("clips per test_fold", Counter(table.column("test_fold").to_pylist()),
                  list(range(build.num_folds + 1))))
    shard_counts = Counter(table.column("shard").to_pylist())
    print(_counts("clips per shard", Counter({shard_name(k, build.num_shards): v for k, v in shard_counts.items()}),
                  report.shards))
    print(f"changed shard manifests: {', '.join(report.changed) if report.changed else 'none'}"
          f" (whole manifest {'rewritten' if report.manifest_changed else 'unchanged'})")
    if report.removed:
        print(f"removed stale shard manifests: {', '.join(report.removed)}")
    if build.skipped:
        print(f"skipped {len(build.skipped)} clip(s) with missing media:")
        for s in build.skipped:
            print(f"  {s.where}: {s.message}")
    return 0
