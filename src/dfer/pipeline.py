"""Work done when the Snakefile is parsed: make each configured dataset's shard manifests,
and find the GPUs the jobs may use.

Snakemake deletes a job's outputs before re-running it, so a rule that rewrote every shard
manifest would make every downstream shard look out of date. Instead the manifests are synced
here, at parse time, and a shard manifest is rewritten only when its clips changed; Snakemake's
mtime check then re-runs exactly the shards whose content changed.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def prepare_datasets(config: Mapping[str, Any], dryrun: bool = False) -> dict[str, list[str]]:
    """Generate missing demo data, sync every configured dataset; return its shard names.

    A dry run (``snakemake -n``) writes too, on purpose: Snakemake decides what re-runs from the
    shard manifests' mtimes, so a preview that left a changed manifest unwritten would list
    none of the jobs the real run then runs. Only manifests whose clips changed are written
    (nothing at all when the data is unchanged), and ``dryrun`` makes that loud;
    ``dfer manifest --check`` is the preview that writes nothing.
    """
    from dfer.manifests import sync_report

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
        report = sync_report(name, definition, results)
        if dryrun and (report.changed or report.manifest_changed or report.removed):
            log.warning(
                "dry run: dataset %s: wrote its changed manifest files (shard manifests %s%s) "
                "so that the preview lists the jobs they re-run; `python -m dfer manifest "
                "--check --dataset %s` previews without writing", name,
                ", ".join(report.changed) or "none",
                f"; removed stale {', '.join(report.removed)}" if report.removed else "", name)
        shards[name] = report.shards
    return shards


def ensure_demo_data(definition: Mapping[str, Any]) -> None:
    """Write the synthetic demo dataset (``layout: demo_static``: the static demo's stills) when
    its manifest does not exist yet."""
    manifest = Path(definition["split_files"][0])
    if manifest.exists():
        return
    log.warning("demo data missing: generating it under %s", definition["root"])
    if definition.get("layout") == "demo_static":
        from dfer.demo_static import generate_static_demo

        generate_static_demo(Path(definition["root"]), seed=int(definition.get("demo_seed", 0)),
                             images_per_class=int(definition.get("demo_clips_per_class", 8)))
        return
    from dfer.demo import generate_demo

    generate_demo(
        Path(definition["root"]),
        seed=int(definition.get("demo_seed", 0)),
        clips_per_class=int(definition.get("demo_clips_per_class", 8)),
    )


#: Environment variable that pins the number of GPUs the workflow assumes on this machine
#: (``0`` for none): the one override of :func:`local_gpu_count` for users and tests.
LOCAL_GPUS_ENV = "DFER_LOCAL_GPUS"


def local_gpu_count(environ: Mapping[str, str] | None = None) -> int:
    """GPUs usable by jobs run on this machine, without importing torch.

    The one GPU check of the workflow: the rules' ``gpu`` resources (``auto`` backends ask for
    a GPU where one is found) and the local profile's ``gpu`` limit both call it. In order:
    ``$DFER_LOCAL_GPUS`` when set (an integer, ``0`` for none); else ``$CUDA_VISIBLE_DEVICES``
    when set (its entries, ``-1`` and blanks not counted; empty means none); else the NVIDIA
    device files ``/dev/nvidia0``, ``/dev/nvidia1``, ... (not ``/dev/nvidiactl``, which a
    container without a GPU may still have).
    """
    env = os.environ if environ is None else environ
    pinned = env.get(LOCAL_GPUS_ENV, "").strip()
    if pinned:
        try:
            count = int(pinned)
        except ValueError:
            raise ValueError(f"{LOCAL_GPUS_ENV}={pinned!r} is not a number of GPUs") from None
        if count < 0:
            raise ValueError(f"{LOCAL_GPUS_ENV}={pinned!r} is negative")
        return count
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len(glob.glob("/dev/nvidia[0-9]*"))
