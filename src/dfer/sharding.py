"""Deterministic assignment of clips to shards.

A clip's shard depends only on its id (a stable hash, not Python's salted ``hash``), so
adding or changing clips touches only the shards those clips fall in, and Snakemake re-runs
only those shards' jobs.
"""

from __future__ import annotations

import hashlib


def shard_of(clip_id: str, num_shards: int) -> int:
    """Return the shard index in ``[0, num_shards)`` for ``clip_id``."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    digest = hashlib.blake2b(clip_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_name(shard: int) -> str:
    """Zero-padded shard label used in every artifact file name (``"007"``)."""
    return f"{shard:03d}"


def shard_names(num_shards: int) -> list[str]:
    """All shard labels of a dataset split into ``num_shards`` shards."""
    return [shard_name(i) for i in range(num_shards)]
