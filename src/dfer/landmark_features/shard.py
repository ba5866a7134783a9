"""Landmark features of one shard: frames safetensors + index in; feature safetensors, a Parquet
index (one row per clip) and failures out.

The clip loop, failure rows and atomic writes are :mod:`dfer.core.shard_runner`'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from dfer.core.artifacts import provenance
from dfer.core.shard_runner import (
    ClipFailure,
    ErrorType,
    Output,
    failures_output,
    finish_shard,
    index_clip_ids,
    open_frames,
    prepare_outputs,
    run_clips,
    shard_label,
)
from dfer.landmark_features.api import describe_model, extract_features, load_model
from dfer.landmark_features.config import LandmarkFeaturesConfig
from dfer.landmark_features.reader import STAGE

SCHEMA_VERSION = 1

#: the largest finite float16
FLOAT16_MAX = float(np.finfo(np.float16).max)

#: one row per clip: frames, and the statistics of its maps (computed in float32 before storage)
SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("num_frames", pa.int32()),
    ("mean", pa.float32()),
    ("std", pa.float32()),
    ("abs_max", pa.float32()),
])


def stored(maps: np.ndarray, dtype: str) -> np.ndarray:
    """``maps`` in the storage dtype; a ``ClipFailure`` when the values cannot be stored as they
    are (non-finite network output, or beyond float16's range), never a silent ``inf``."""
    if not np.isfinite(maps).all():
        raise ClipFailure(ErrorType.BACKEND_ERROR, "the network gave non-finite landmark features")
    peak = float(np.abs(maps).max()) if maps.size else 0.0
    if dtype == "float16" and peak > FLOAT16_MAX:
        raise ClipFailure(ErrorType.BACKEND_ERROR,
                          f"landmark features up to {peak:.4g} exceed float16's range; "
                          "set landmark_features.dtype: float32")
    return maps.astype(np.float16 if dtype == "float16" else np.float32)


def index_table(maps: Mapping[str, np.ndarray]) -> pa.Table:
    """The index rows of the clips that succeeded, in index order."""
    rows = [(c, len(m), float(m.mean()), float(m.std()), float(np.abs(m).max())) for c, m in maps.items()]
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in SCHEMA]
    return pa.Table.from_arrays([pa.array(col, f.type) for col, f in zip(columns, SCHEMA, strict=True)],
                                schema=SCHEMA)


def run_shard(
    frames_path: str | os.PathLike[str],
    index_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    out_index_path: str | os.PathLike[str],
    failures_path: str | os.PathLike[str],
    params: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Compute the landmark feature maps of every clip of a decoded shard.

    Writes ``out_path`` (safetensors, key clip_id -> ``[T, C, 14, 14]`` in ``dtype``),
    ``out_index_path`` (Parquet, one row per clip) and ``failures_path``; provenance in all
    three says which kind of map, how many channels, which network and weights. Missing or
    unfit weights raise before any clip (a configuration error, not a clip's); an empty shard
    writes valid empty artifacts without loading a network. Returns the summary also stored in
    the provenance.
    """
    cfg = LandmarkFeaturesConfig.from_dict(params)
    clip_ids = index_clip_ids(index_path)
    described = describe_model(cfg)  # a missing weights file stops the job here
    if clip_ids:
        load_model(cfg)
    prepare_outputs([out_path, out_index_path, failures_path])
    with open_frames(frames_path) as frames:
        run = run_clips(STAGE, shard_label(frames_path), clip_ids,
                        lambda clip_id: extract_features(frames.get(clip_id), cfg),
                        source=str(frames_path))
    maps = {c: m for c, m in run.results.items()}
    tensors: dict[str, np.ndarray] = {}
    for clip_id, m in list(maps.items()):  # storage may still fail a clip (range)
        try:
            tensors[clip_id] = stored(m, cfg.dtype)
        except ClipFailure as exc:
            run.fail(clip_id, str(frames_path), exc.error_type, str(exc))
            del maps[clip_id]
    summary = {"clips": len(tensors), "failed_clips": len(run.failures),
               "frames": int(sum(len(m) for m in tensors.values()))}
    base = {"backend": cfg.backend, **described, "dtype": cfg.dtype, "params": cfg.output_params()}
    meta = provenance(STAGE, SCHEMA_VERSION, **base, **summary)
    finish_shard(run, [
        Output(out_path, tensors, meta),
        Output(out_index_path, index_table(maps), meta, SCHEMA),
        failures_output(run, failures_path, provenance(STAGE, SCHEMA_VERSION, **base)),
    ])
    return summary
