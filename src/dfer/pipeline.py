"""Work done when the Snakefile is parsed: make each configured dataset's shard manifests,
and find the GPUs the jobs may use.

Snakemake deletes a job's outputs before re-running it, so a rule that rewrote every shard
manifest would make every downstream shard look out of date. Instead the manifests are synced
here, at parse time, and a shard manifest is rewritten only when its clips changed; Snakemake's
mtime check then re-runs exactly the shards whose content changed.

Not every parse may write: what the Snakemake process reading the Snakefile is about to do
(:class:`ParseContext`) decides. A job on a cluster node reads the manifests the submitting
run synced (re-syncing there would stat every clip file once per job, and could change a
running workflow's inputs); while another Snakemake run holds this directory's lock, a parse
(a dry run, or a second run that is about to stop at the lock) writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfer.core.gpu_placement import LOCAL_GPUS_ENV, local_gpu_count

__all__ = ["LOCAL_GPUS_ENV", "ParseContext", "ensure_demo_data", "local_gpu_count",
           "prepare_datasets", "synced_shards"]

log = logging.getLogger(__name__)

#: Snakemake's lock files of a working directory (the default file persistence backend):
#: ``N.input.lock`` / ``N.output.lock``, present while a run is executing there.
SNAKEMAKE_LOCKS = Path(".snakemake") / "locks"


@dataclass(frozen=True)
class ParseContext:
    """What the Snakemake process that reads the Snakefile is about to do.

    ``dryrun``: ``snakemake -n``. ``cluster_job``: Snakemake runs one submitted job (or group)
    on a cluster node (``--mode remote``, or ``--mode subprocess`` below it).
    ``locked``: another run holds this working directory's lock.
    """

    dryrun: bool = False
    cluster_job: bool = False
    locked: bool = False

    @classmethod
    def of(cls, workflow: Any, workdir: str | Path = ".") -> ParseContext:
        """Read from Snakemake's own settings while the Snakefile is parsed.

        ``workflow.dryrun`` is still False then (Snakemake 9 sets the dry-run executor only
        after parsing); ``workflow.output_settings.dryrun`` is the ``-n`` of the command line.
        ``workflow_settings.exec_mode`` is ``DEFAULT`` for the Snakemake a user starts,
        ``REMOTE`` / ``SUBPROCESS`` for the ones an executor starts for a job.
        """
        output = getattr(workflow, "output_settings", None)
        settings = getattr(workflow, "workflow_settings", None)
        mode = getattr(getattr(settings, "exec_mode", None), "name", "DEFAULT")
        return cls(dryrun=bool(getattr(output, "dryrun", False)),
                   cluster_job=mode in ("REMOTE", "SUBPROCESS"),
                   locked=workdir_locked(workdir))


def workdir_locked(workdir: str | Path = ".") -> bool:
    """Whether a Snakemake run holds the lock of ``workdir`` (its ``.snakemake/locks`` files).

    A run that crashed leaves its lock behind; ``snakemake --unlock`` removes it.
    """
    locks = Path(workdir) / SNAKEMAKE_LOCKS
    return locks.is_dir() and any(locks.glob("*.lock"))


def synced_shards(results: str | Path, dataset: str) -> list[str]:
    """A dataset's shard names from its synced manifest (no split file is read, no clip stat).

    What a job on a cluster node uses: the run that submitted it synced the manifests.
    """
    from dfer.core.artifacts import read_meta
    from dfer.core.paths import manifest_file
    from dfer.core.sharding import shard_names

    path = manifest_file(results, dataset)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: missing on this node; a cluster job reads the manifests that the "
            f"Snakemake run which submitted it synced (is {results} on a shared filesystem?)")
    return shard_names(int(read_meta(path)["num_shards"]))


def prepare_datasets(config: Mapping[str, Any], dryrun: bool = False,
                     context: ParseContext | None = None) -> dict[str, list[str]]:
    """Generate missing demo data, sync every configured dataset; return its shard names.

    A dry run (``snakemake -n``) writes too, on purpose: Snakemake decides what re-runs from the
    shard manifests' mtimes, so a preview that left a changed manifest unwritten would list
    none of the jobs the real run then runs. Only manifests whose clips changed are written
    (nothing at all when the data is unchanged), and a dry run that wrote says so in a line
    starting ``dry run:``; ``dfer manifest --check`` is the preview that writes nothing.
    Exceptions (``context``): a cluster job reads the synced shard lists
    (:func:`synced_shards`); while another run holds the lock nothing is written and the
    shard lists are those of the manifests as they are.
    """
    context = context or ParseContext(dryrun=dryrun)
    results = Path(config["results"])
    defs = config["dataset_defs"]
    for name in config["datasets"]:
        if name not in defs:
            raise ValueError(
                f"dataset {name!r} is listed in `datasets` but has no entry in `dataset_defs` "
                f"(known: {', '.join(sorted(defs))})"
            )
    if context.cluster_job:
        return {name: synced_shards(results, name) for name in config["datasets"]}

    from dfer.manifests import sync_report

    write = not context.locked
    shards: dict[str, list[str]] = {}
    for name in config["datasets"]:
        definition = defs[name]
        if definition.get("generate_demo"):
            if not write and not Path(definition["split_files"][0]).exists():
                shards[name] = synced_shards(results, name)
                continue
            if write:
                ensure_demo_data(definition)
        report = sync_report(name, definition, results, write=write)
        changes = _changes(report)
        if not write:
            log.warning(
                "%s: another Snakemake run holds the lock of this directory (%s): dataset %s: "
                "shard manifests left as they are (%s); jobs are listed from the manifests on "
                "disk. If no run is going (a crash left the lock), `snakemake --unlock` first",
                "dry run" if context.dryrun else "not synced", SNAKEMAKE_LOCKS, name,
                f"a sync would write {changes}" if changes else "they are up to date")
        elif context.dryrun and changes:
            log.warning(
                "dry run: dataset %s: wrote its changed manifest files (%s) so that the "
                "preview lists the jobs they re-run; `python -m dfer manifest --check "
                "--dataset %s` previews without writing", name, changes, name)
        shards[name] = report.shards
    return shards


def _changes(report: Any) -> str:
    """The manifest files a sync rewrote (or would), in words; '' when none."""
    if not (report.changed or report.manifest_changed or report.removed):
        return ""
    text = f"shard manifests {', '.join(report.changed) or 'none'}"
    if report.removed:
        text += f"; removed stale {', '.join(report.removed)}"
    return text


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
