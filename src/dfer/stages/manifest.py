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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", type=Path, default=None,
                        help="config overlay; repeat it to overlay files in order. They are "
                             "merged over config/config.yaml exactly as snakemake's --configfile "
                             "merges them, and the schema's defaults are filled in as the "
                             "Snakefile does (default: config/config.yaml alone)")
    parser.add_argument("--dataset", required=True, help="dataset name (a key of dataset_defs)")
    parser.add_argument("--results", default=None,
                        help="results directory (default: `results` of the config)")
    parser.add_argument("--check", action="store_true",
                        help="validate and report what would change, writing nothing "
                             "(no manifests, no demo data)")


def _counts(title: str, counter: Counter, order: list | None = None) -> str:
    keys = order if order is not None else sorted(counter)
    return f"{title}: " + ", ".join(f"{k} {counter.get(k, 0)}" for k in keys)


#: The Snakefile's ``configfile:``; Snakemake reads it relative to the working folder and
#: merges every ``--configfile`` over it.
BASE_CONFIG = Path("config/config.yaml")

#: The config schema whose defaults the Snakefile fills in (``validate``) before anything reads
#: the config: the manifest's metadata records its dataset's section as the pipeline sees it.
SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


def merge_configs(paths: list[Path], base: Path | None = BASE_CONFIG) -> dict:
    """The config files merged as Snakemake merges ``--configfile`` overlays, with Snakemake's
    own functions: the overlays are merged into one in order (``update_config``: mappings key
    by key, lists and everything else replaced), then applied over ``base`` (the Snakefile's
    ``configfile:``, when it exists), so a worked overlay is checked as the pipeline sees it."""
    from snakemake.utils import update_config

    overlay: dict = {}
    for path in paths:
        update_config(overlay, _load(path))
    config = _load(base) if base is not None and base.is_file() else {}
    update_config(config, overlay)
    return config


def _load(path: Path) -> dict:
    """One config file, read as Snakemake reads it; ``ValueError`` naming the file otherwise."""
    from snakemake.common.configfile import load_configfile
    from snakemake.exceptions import WorkflowError

    if not path.is_file():
        raise ValueError(f"{path}: config file not found")
    try:
        return load_configfile(str(path))
    except WorkflowError as exc:
        raise ValueError(f"{path}: {' '.join(str(exc).split())}") from None


def pipeline_config(paths: list[Path]) -> tuple[dict, list[Path]]:
    """The config as the Snakefile sees it, and the files it was merged from: ``paths`` over
    :data:`BASE_CONFIG`, schema defaults filled in. Raises ``ValueError`` with one line."""
    files = ([BASE_CONFIG] if BASE_CONFIG.is_file() else []) + [p for p in paths if p != BASE_CONFIG]
    config = merge_configs(paths)
    if "results" not in config:
        raise ValueError(f"no `results` in {' + '.join(map(str, files)) or 'any config'} "
                         f"({BASE_CONFIG} not found in {Path.cwd()}: run from the checkout, or "
                         "give a config that sets `results`)")
    if SCHEMA.is_file():  # the schema part of the Snakefile's check (the rest imports torch)
        from snakemake.utils import validate

        from dfer.config_check import schema_problem, source_file

        found = schema_problem(config, SCHEMA)
        if found:
            key, message = found
            file = source_file(key, files)
            raise ValueError(f"config error at {'.'.join(map(str, key))}"
                             f"{f' (set in {file})' if file else ''}: {message}")
        validate(config, str(SCHEMA), set_default=True)  # what the Snakefile does
    return config, files


def run(args: argparse.Namespace) -> int:
    from dfer.core.sharding import shard_name
    from dfer.manifests import ManifestError, sync_report
    from dfer.pipeline import ensure_demo_data

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        config, files = pipeline_config(list(args.config or []))
    except ValueError as exc:
        print(f"dfer manifest: {exc}", file=sys.stderr)
        return 2
    defs = config.get("dataset_defs", {})
    if args.dataset not in defs:
        print(f"dfer manifest: dataset {args.dataset!r} is not in dataset_defs of "
              f"{' + '.join(map(str, files))} "
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
