"""``dfer manifest``: normalize one dataset's split files and write its shard manifests.

The pipeline does the same at parse time; this command is for checking a dataset by hand
(every problem of its split files at once) and for seeing what a dataset update changes.
``--check`` is the preview that writes nothing: parsing the Snakefile (``snakemake -n``
included) must write changed shard manifests, because their mtimes are what tells Snakemake
which shards to re-run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

import yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", type=Path, default=None,
                        help="pipeline config with `results` and `dataset_defs`; repeat it to "
                             "overlay files in order, as snakemake's --configfile does "
                             "(default: config/config.yaml)")
    parser.add_argument("--dataset", required=True, help="dataset name (a key of dataset_defs)")
    parser.add_argument("--results", default=None,
                        help="results directory (default: `results` of the config)")
    parser.add_argument("--check", action="store_true",
                        help="validate and report what would change, writing nothing "
                             "(no manifests, no demo data)")


def _counts(title: str, counter: Counter, order: list | None = None) -> str:
    keys = order if order is not None else sorted(counter)
    return f"{title}: " + ", ".join(f"{k} {counter.get(k, 0)}" for k in keys)


def merge_configs(paths: list[Path]) -> dict:
    """The config files merged in order as Snakemake merges ``--configfile`` overlays
    (mappings key by key, everything else replaced), so a worked overlay is checked as the
    pipeline will see it."""

    def merge(base: dict, over: dict) -> dict:
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    config: dict = {}
    for path in paths:
        merge(config, yaml.safe_load(path.read_text()) or {})
    return config


def run(args: argparse.Namespace) -> int:
    from dfer.core.sharding import shard_name
    from dfer.manifests import ManifestError, sync_report
    from dfer.pipeline import ensure_demo_data

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    paths = args.config or [Path("config/config.yaml")]
    if "results" not in (yaml.safe_load(paths[0].read_text()) or {}) and len(paths) == 1:
        paths = [Path("config/config.yaml"), *paths]  # an overlay alone: over the base config
    config = merge_configs(paths)
    defs = config.get("dataset_defs", {})
    if args.dataset not in defs:
        print(f"dfer manifest: dataset {args.dataset!r} is not in dataset_defs of "
              f"{' + '.join(map(str, paths))} "
              f"(known: {', '.join(sorted(defs))})", file=sys.stderr)
        return 2
    definition = defs[args.dataset]
    if definition.get("generate_demo") and not args.check:
        ensure_demo_data(definition)
    results = args.results or config["results"]
    try:
        report = sync_report(args.dataset, definition, results, write=not args.check)
    except ManifestError as exc:
        print(f"dfer manifest: {exc}", file=sys.stderr)
        return 1
    build = report.build
    table = build.table
    print(f"dataset {build.dataset} (layout {build.layout}): {table.num_rows} clips, "
          f"{build.num_folds} fold(s), {build.num_shards} shard(s)")
    print(_counts("clips per label", Counter(table.column("label").to_pylist()), list(build.labels)))
    print(f"class order (label_idx): {build.label_order}")
    for file, how in build.numberings.items():
        print(f"numeric labels of {file}: numbering {how}")
    print(_counts("clips per test_fold", Counter(table.column("test_fold").to_pylist()),
                  list(range(build.num_folds + 1))))
    shard_counts = Counter(table.column("shard").to_pylist())
    print(_counts("clips per shard", Counter({shard_name(k, build.num_shards): v for k, v in shard_counts.items()}),
                  report.shards))
    if args.check:
        print(f"shard manifests that a run would rewrite (their shards re-run): "
              f"{', '.join(report.changed) if report.changed else 'none'} (whole manifest "
              f"{'would be rewritten' if report.manifest_changed else 'unchanged'}); "
              "nothing was written (--check)")
        if report.removed:
            print(f"stale shard manifests a run would remove: {', '.join(report.removed)}")
    else:
        print(f"changed shard manifests: {', '.join(report.changed) if report.changed else 'none'}"
              f" (whole manifest {'rewritten' if report.manifest_changed else 'unchanged'})")
        if report.removed:
            print(f"removed stale shard manifests: {', '.join(report.removed)}")
    if build.skipped:
        print(f"skipped {len(build.skipped)} clip(s) with missing media:")
        for s in build.skipped:
            print(f"  {s.where}: {s.message}")
    return 0
