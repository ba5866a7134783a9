"""Deterministic assignment of clips to shards, and the one definition of shard names.

A clip's shard depends only on its id (a stable hash, not Python's salted ``hash``), so
adding or changing clips touches only the shards those clips fall in, and Snakemake re-runs
only those shards' jobs.

Shard names are the shard index zero-padded to the width of a dataset's largest index, at
least 3 digits: ``"000" ... "063"`` for 64 shards, ``"0000" ... "1199"`` for 1200. All names of
one dataset have the same width, so they sort as strings in shard order. The rules' ``shard``
wildcard, the manifest sync and the training reader all use :data:`SHARD_REGEX` and
:func:`shard_names` / :func:`shards_in` from here.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: Fewest digits of a shard name (datasets of up to 1000 shards: ``"000"`` to ``"999"``).
MIN_DIGITS = 3
#: A shard name as a regular expression (the ``shard`` wildcard constraint of the rules):
#: at least MIN_DIGITS digits. Written without ``{n,}``, whose comma Snakemake's wildcard
#: parser would take for the end of the wildcard name.
SHARD_REGEX = rf"\d{{{MIN_DIGITS}}}\d*"
#: Prefix of every shard file name: ``shard-{name}{suffix}``.
SHARD_PREFIX = "shard-"


def shard_of(clip_id: str, num_shards: int) -> int:
    """Return the shard index in ``[0, num_shards)`` for ``clip_id``."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    digest = hashlib.blake2b(clip_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_width(num_shards: int) -> int:
    """Digits of every shard name of a dataset split into ``num_shards`` shards."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return max(MIN_DIGITS, len(str(num_shards - 1)))


def shard_name(shard: int, num_shards: int | None = None) -> str:
    """Zero-padded shard label used in every artifact file name (``"007"``, ``"0007"``).

    ``num_shards``: how many shards the dataset has; names are padded to the width of the
    largest. Omitted, the name has :data:`MIN_DIGITS` digits, which is right only for datasets
    of at most 1000 shards.
    """
    if shard < 0 or (num_shards is not None and shard >= num_shards):
        raise ValueError(f"shard index {shard} out of range for {num_shards} shards")
    if num_shards is None and shard >= 10**MIN_DIGITS:
        raise ValueError(f"shard index {shard}: pass num_shards to name it")
    width = shard_width(num_shards) if num_shards is not None else MIN_DIGITS
    return f"{shard:0{width}d}"


def shard_names(num_shards: int) -> list[str]:
    """All shard labels of a dataset split into ``num_shards`` shards, in shard order."""
    return [shard_name(i, num_shards) for i in range(num_shards)]


def shard_file_regex(suffix: str) -> re.Pattern[str]:
    """Matches ``shard-{name}{suffix}`` file names; group 1 is the shard name."""
    return re.compile(rf"^{re.escape(SHARD_PREFIX)}({SHARD_REGEX}){re.escape(suffix)}$")


def shards_in(folder: str | Path, suffix: str = ".parquet") -> list[str]:
    """Names of the shards with a ``shard-{name}{suffix}`` file in ``folder``, in shard order.

    ``.parquet`` does not match ``shard-000.failures.parquet`` (the name must be digits only).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = shard_file_regex(suffix)
    found = [m.group(1) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return sorted(found, key=lambda name: (int(name), name))
