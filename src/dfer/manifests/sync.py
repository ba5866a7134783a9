"""Write a dataset's manifest and shard manifests, touching only shards whose clips changed.

Called while the Snakefile is parsed (``dfer.pipeline.prepare_datasets``) and by
``dfer manifest``. A shard file is rewritten only when its bytes differ, so an unchanged shard
keeps its mtime and Snakemake re-runs only the shards whose clips changed. Its metadata holds
only what defines its content (dataset, layout, labels, folds, shard), never run details such
as the list of skipped clips, which lives in the whole-dataset manifest instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dfer.core.artifacts import (
    FAILURES_SCHEMA,
    META_KEY,
    failures_frame,
    parquet_bytes,
    provenance,
    write_bytes_if_changed,
)
from dfer.core.paths import manifest_failures_file, manifest_file, shard_file, shard_file_name
from dfer.core.shard_runner import ErrorType, failure_row
from dfer.core.sharding import shard_names, shards_in
from dfer.manifests.build import MANIFEST_SCHEMA, ManifestBuild, build_manifest

log = logging.getLogger(__name__)

#: Version of the manifest layout (bump when columns or their meaning change).
SCHEMA_VERSION = 1
STAGE = "manifest"


@dataclass
class SyncReport:
    """What a sync found and wrote."""

    build: ManifestBuild
    shards: list[str]
    changed: list[str] = field(default_factory=list)
    manifest_changed: bool = False
    removed: list[str] = field(default_factory=list)


def failures_file(results: str | Path, dataset: str) -> Path:
    """Clips left out by ``on_missing: skip`` (failures-table layout)."""
    return manifest_failures_file(results, dataset)


def _shard_meta(build: ManifestBuild, shard: str | None) -> dict[str, Any]:
    return provenance(
        STAGE, SCHEMA_VERSION, dataset=build.dataset, layout=build.layout,
        labels=list(build.labels), num_folds=build.num_folds, num_shards=build.num_shards,
        shard=shard,
    )


def _put(path: Path, data: bytes, write: bool) -> bool:
    """Whether ``path`` lacks exactly ``data``; written (only then) when ``write``."""
    if write:
        return write_bytes_if_changed(path, data)
    return not (path.exists() and path.read_bytes() == data)


def sync_report(name: str, definition: Mapping[str, Any], results: str | Path,
                write: bool = True) -> SyncReport:
    """Build the manifest of dataset ``name`` and write what changed; see ``sync_dataset``.

    ``write=False`` is the preview (``dfer manifest --check``): the report says which files
    would be rewritten or removed, and nothing on disk changes.
    """
    build = build_manifest(name, definition)
    names = shard_names(build.num_shards)
    report = SyncReport(build, names)
    shard_col = build.table.column("shard")
    for index, shard in enumerate(names):
        part = build.table.filter(pc.equal(shard_col, index))
        data = parquet_bytes(part, _shard_meta(build, shard), schema=MANIFEST_SCHEMA)
        if _put(shard_file(results, name, STAGE, shard, ".parquet"), data, write):
            report.changed.append(shard)
    meta = _shard_meta(build, None)
    meta.update(
        params=dict(definition),
        num_clips=build.table.num_rows,
        # whose class order label_idx follows, and how each file's numeric labels were read:
        # in the whole-dataset manifest only (shard manifests hold what defines their clips)
        label_order=build.label_order,
        numbering=build.numberings,
        skipped=[{"clip_id": s.clip_id, "where": s.where, "message": s.message,
                  "label": s.label, "test_fold": s.test_fold} for s in build.skipped],
    )
    report.manifest_changed = _put(
        manifest_file(results, name), parquet_bytes(build.table, meta, schema=MANIFEST_SCHEMA),
        write)
    failures = failures_frame([failure_row(s.clip_id, STAGE, s.where, ErrorType.MISSING_FILE,
                                           s.message) for s in build.skipped])
    _put(failures_file(results, name),
         parquet_bytes(failures, _shard_meta(build, None), schema=FAILURES_SCHEMA), write)
    report.removed = _remove_stale_shards(manifest_file(results, name).parent, set(names), write)
    return report


def _remove_stale_shards(folder: Path, keep: set[str], write: bool = True) -> list[str]:
    """Delete shard manifests left from another ``num_shards`` so no rule picks them up."""
    removed = [shard for shard in shards_in(folder, ".parquet") if shard not in keep]
    if not write:
        return removed
    for shard in removed:
        (folder / shard_file_name(shard, ".parquet")).unlink()
    if removed:
        log.warning("removed stale shard manifests %s from %s", ", ".join(removed), folder)
    return removed


def sync_dataset(name: str, definition: Mapping[str, Any], results: str | Path) -> list[str]:
    """Read + validate dataset ``name``, write its manifests; return all its shard names.

    Writes ``results/{name}/manifest/manifest.parquet`` and one ``shard-{s}.parquet`` per shard
    (empty shards too), each only when its bytes changed. Raises ``ManifestError`` listing every
    problem of the split files as ``FILE:LINE: problem``.
    """
    return sync_report(name, definition, results).shards


def read_manifest(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A manifest (whole or shard) as a DataFrame plus its provenance metadata."""
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(META_KEY.encode())
    meta = json.loads(raw) if raw else {}
    return table.to_pandas(), meta
