"""Where every artifact lives: one function per artifact, shared by rules, stages and tests.

Layout (``results/{dataset}/...``)::

    manifest/manifest.parquet          normalized manifest of the whole dataset
    manifest/shard-{s}.parquet         the clips of shard s (rewritten only when they change)
    frames/shard-{s}.safetensors       decoded face crops, key clip_id -> uint8 [T, S, S, 3]
    frames/shard-{s}.parquet           decode index, one row per decoded clip
    frames/shard-{s}.failures.parquet  per-clip decode failures
    landmarks/shard-{s}.parquet        one row per (clip, frame): bbox, score, 68x2 points
    parsing/shard-{s}.safetensors      label maps, key clip_id -> uint8 [T, S, S]
    parsing/shard-{s}.parquet          per-frame region areas
    captions/shard-{s}.parquet         one caption per clip
    train/{run}/fold-{k}/...           checkpoint, metrics, predictions, plots

Shard names ``{s}`` (``"000"``, or ``"0000"`` for datasets of more than 1000 shards) come from
:mod:`dfer.sharding`.
"""

from __future__ import annotations

from pathlib import Path

from dfer.sharding import SHARD_PREFIX

STAGES_WITH_SHARDS = ("manifest", "frames", "landmarks", "parsing", "captions")


def dataset_dir(results: str | Path, dataset: str) -> Path:
    return Path(results) / dataset


def shard_file_name(shard: str, suffix: str) -> str:
    """``shard-{shard}{suffix}`` (suffix like ``.parquet``)."""
    return f"{SHARD_PREFIX}{shard}{suffix}"


def shard_file(results: str | Path, dataset: str, stage: str, shard: str, suffix: str) -> Path:
    """``results/{dataset}/{stage}/shard-{shard}{suffix}`` (suffix like ``.parquet``)."""
    return dataset_dir(results, dataset) / stage / shard_file_name(shard, suffix)


def manifest_file(results: str | Path, dataset: str) -> Path:
    return dataset_dir(results, dataset) / "manifest" / "manifest.parquet"


def fold_dir(results: str | Path, dataset: str, run: str, fold: int) -> Path:
    return dataset_dir(results, dataset) / "train" / run / f"fold-{fold}"
