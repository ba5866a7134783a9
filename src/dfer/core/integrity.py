"""Is an artifact whole? Cheap checks of shard files, where stages read them and when the
workflow is parsed.

Writes are atomic (:mod:`dfer.core.artifacts`), but a file can still be lost or cut short
after it was written: deleted by hand, a copy or a sync that stopped half-way, a disk that
filled while another tool rewrote it. Unchecked, the reader then stops with a library's
traceback (``incomplete metadata``, ``Parquet magic bytes not found``) that names no file,
and Snakemake does not rebuild it: a job whose outputs exist is up to date whatever their
content, and a missing intermediate file is not rebuilt while the files made from it exist.

So every shard file is checked by its structure alone, in microseconds and without reading
its data: a Parquet file must start and end with ``PAR1`` with its footer inside the file; a
safetensors file's header must be readable JSON and the file exactly as long as the header's
tensors need. Two places use the check:

* **where a stage reads an artifact** (:func:`require`): a missing or damaged input stops the
  stage with one line naming the file, what is wrong and the command that rebuilds it
  (:class:`DamagedArtifact`; ``dfer`` prints it without a traceback);
* **when the workflow is parsed** (:func:`repair_damaged_shards`, one call in
  ``workflow/rules/common.smk``): a shard job whose outputs are incomplete (one missing or
  damaged) has its remaining outputs removed, so Snakemake sees that job's target missing
  and runs it again, and the jobs downstream of it re-run as for any rebuilt input. Checked
  this way rather than with Snakemake's own means: ``ensure`` checks an output only right
  after its job ran, checksums and ``--rerun-triggers`` notice changed inputs, not damaged
  outputs, and a missing intermediate is not even considered while its consumers' outputs
  exist. Nothing is removed while another Snakemake holds the working folder's lock (its
  jobs may be writing those very files).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dfer.core.paths import (
    FAILURES,
    MANIFEST_DIR,
    PARQUET,
    SAFETENSORS,
    STAGE_DIRS,
    shard_file,
)

log = logging.getLogger(__name__)

#: The files one shard job of each stage writes (its rule's outputs), by artifact folder:
#: the unit that is whole or rebuilt together.
JOB_OUTPUTS: dict[str, tuple[str, ...]] = {
    STAGE_DIRS["decode"]: (SAFETENSORS, PARQUET, FAILURES),
    STAGE_DIRS["landmarks"]: (PARQUET, FAILURES),
    STAGE_DIRS["parsing"]: (SAFETENSORS, PARQUET, FAILURES),
    STAGE_DIRS["captions"]: (PARQUET, FAILURES),
    STAGE_DIRS["landmark_features"]: (SAFETENSORS, PARQUET, FAILURES),
}

_PARQUET_MAGIC = b"PAR1"
_SHARD_NAME = re.compile(r"^shard-(\w+?)(\.failures)?\.(parquet|safetensors)$")


class DamagedArtifact(Exception):
    """An artifact a stage needs is missing or damaged; ``str()`` is one line naming the file,
    the problem and how to rebuild it."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}; {rebuild_hint(self.path)}")


def problem(path: str | os.PathLike[str]) -> str | None:
    """Why the artifact at ``path`` cannot be read whole (missing, empty, truncated, not of its
    format), or None when its structure is sound. Reads a few bytes (Parquet) or the header
    (safetensors), never the data."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            return "not a file"
        if size == 0:
            return "empty file (0 bytes)"
        with open(path, "rb") as fh:
            if path.suffix == SAFETENSORS:
                return _safetensors_problem(fh, size)
            if path.suffix == PARQUET:
                return _parquet_problem(fh, size)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _parquet_problem(fh, size: int) -> str | None:  # noqa: ANN001 - a binary file
    if size < 12:
        return f"truncated: {size} bytes, too short for a Parquet file"
    head = fh.read(4)
    fh.seek(size - 8)
    tail = fh.read(8)
    if head != _PARQUET_MAGIC:
        return "not a Parquet file (no PAR1 at its start)"
    if tail[4:] != _PARQUET_MAGIC:
        return f"truncated: no Parquet footer at its end ({size} bytes)"
    footer = int.from_bytes(tail[:4], "little")
    if footer + 12 > size:
        return f"damaged: its footer claims {footer} bytes of a {size}-byte file"
    return None


def _safetensors_problem(fh, size: int) -> str | None:  # noqa: ANN001 - a binary file
    if size < 8:
        return f"truncated: {size} bytes, too short for a safetensors file"
    length = int.from_bytes(fh.read(8), "little")
    if 8 + length > size:
        return f"truncated: its header needs {8 + length} bytes, the file has {size}"
    try:
        header = json.loads(fh.read(length))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                  default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return "damaged: its header is not a safetensors header"
    expected = 8 + length + end
    if size < expected:
        return f"truncated: its tensors need {expected} bytes, the file has {size}"
    if size > expected:
        return f"damaged: {size - expected} bytes after its last tensor"
    return None


def rebuild_hint(path: str | os.PathLike[str]) -> str:
    """How to rebuild the artifact at ``path``: the Snakemake command that re-runs the job
    that wrote it (and what depends on it), from the results layout of its path."""
    path = Path(path)
    match = _SHARD_NAME.match(path.name)
    folder = path.parent.name
    if folder == MANIFEST_DIR:
        return ("the workflow rewrites it when it is parsed: run `snakemake -n` (or `python -m "
                "dfer manifest --dataset DATASET`)")
    if match and folder in JOB_OUTPUTS:
        target = path.parent / f"shard-{match.group(1)}{PARQUET}"
        return f"rebuild it with `snakemake --cores all --forcerun {target}`"
    return "re-run the stage that wrote it"


def require(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> None:
    """:class:`DamagedArtifact` for the first of ``paths`` that is missing or damaged."""
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        found = problem(path)
        if found is not None:
            raise DamagedArtifact(path, found)


def _locked(workdir: Path) -> bool:
    """Whether a Snakemake run holds ``workdir`` (its ``.snakemake/locks``): its jobs may be
    writing the very files a check would find incomplete."""
    locks = workdir / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def damaged_jobs(results: str | os.PathLike[str], shards: Mapping[str, Sequence[str]],
                 folders: Mapping[str, Sequence[str]] | None = None,
                 ) -> list[tuple[list[Path], list[tuple[Path, str]]]]:
    """Shard jobs whose outputs are incomplete: (the outputs still present, (output, problem)
    of each missing or damaged one), for every dataset -> shards of ``shards``. A job none of
    whose outputs exists has not run yet and is not listed. ``folders``: dataset -> the stage
    folders to look at (the report's declared ones; None: every stage's)."""
    found = []
    for dataset, names in shards.items():
        for shard in names:
            for folder, suffixes in JOB_OUTPUTS.items():
                if folders is not None and folder not in folders.get(dataset, ()):
                    continue
                outputs = [shard_file(results, dataset, folder, shard, s) for s in suffixes]
                problems = {p: problem(p) for p in outputs}
                present = [p for p in outputs if problems[p] != "missing"]
                bad = [(p, why) for p, why in problems.items() if why is not None]
                if present and bad:
                    found.append((present, bad))
    return found


def repair_damaged_shards(results: str | os.PathLike[str], shards: Mapping[str, Sequence[str]],
                          workdir: str | os.PathLike[str] = ".") -> list[Path]:
    """Remove the remaining outputs of every shard job with a missing or damaged output, so
    that Snakemake runs the job again (module doc); returns the removed files.

    Called once when the workflow is parsed. Does nothing while another Snakemake run holds
    ``workdir``'s lock (it says so when something would have been removed).
    """
    jobs = damaged_jobs(results, shards)
    if not jobs:
        return []
    if _locked(Path(workdir)):
        log.warning("%d shard job(s) have missing or damaged outputs (%s); another Snakemake "
                    "run holds this folder, so nothing was removed: run again once it ended",
                    len(jobs), "; ".join(f"{p}: {why}" for p, why in jobs[0][1]))
        return []
    removed: list[Path] = []
    for present, bad in jobs:
        for path in present:
            path.unlink(missing_ok=True)
            removed.append(path)
        log.warning("%s; removed the job's other outputs (%s) so that Snakemake rebuilds them",
                    "; ".join(f"{p}: {why}" for p, why in bad), ", ".join(p.name for p in present))
    return removed
