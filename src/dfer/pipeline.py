"""Work done when the Snakefile is parsed: make each configured dataset's shard manifests.

Snakemake deletes a job's outputs before re-running it, so a rule that rewrote every shard
manifest would make every downstream shard look out of date. Instead the manifests are synced
here, at parse time, and a shard manifest is rewritten only when its clips changed; Snakemake's
mtime check then re-runs exactly the shards whose content changed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def prepare_datasets(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Generate missing demo data, sync every configured dataset; return its shard names."""
    from dfer.manifests import sync_dataset

    results = Path(config["results"])
    shards: dict[str, list[str]] = {}
    for name in config["datasets"]:
        defs = config["dataset_defs"]
        if name not in defs:
            raise ValueError(
                f"dataset {name!r} is listed in `datasets` but has no entry in `dataset_defs` "
                f"(known: {', '.join(sorted(defs))})"
            )
        definition = defs[name]
        if definition.get("generate_demo"):
            ensure_demo_data(definition)
        shards[name] = sync_dataset(name, definition, results)
    return shards


def ensure_demo_data(definition: Mapping[str, Any]) -> None:
    """Write the synthetic demo dataset when its manifest does not exist yet."""
    manifest = Path(definition["split_files"][0])
    if manifest.exists():
        return
    from dfer.demo import generate_demo

    log.warning("demo data missing: generating it under %s", definition["root"])
    generate_demo(
        Path(definition["root"]),
        seed=int(definition.get("demo_seed", 0)),
        clips_per_class=int(definition.get("demo_clips_per_class", 8)),
    )
