"""Parsing of one shard: frames + landmarks in, label-map safetensors + area Parquet out.

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
    Output,
    failures_output,
    finish_shard,
    index_clip_ids,
    open_frames,
    prepare_outputs,
    run_clips,
    shard_label,
)
from dfer.landmarks.table import read_landmarks
from dfer.parsing.api import choose_backend, load_models, model_name, parse_clip
from dfer.parsing.checks import eye_side_votes
from dfer.parsing.config import ParsingConfig
from dfer.parsing.labels import LABELS, area_fractions

STAGE = "parsing"
SCHEMA_VERSION = 1

SCHEMA = pa.schema(
    [("clip_id", pa.string()), ("frame", pa.int32()), ("has_points", pa.bool_())]
    + [(f"area_{name}", pa.float32()) for name in LABELS]
)


def stats_table(maps: Mapping[str, np.ndarray], has_points: Mapping[str, np.ndarray]) -> pa.Table:
    """One row per (clip, frame): whether points existed, and each label's area fraction."""
    if not maps:
        return SCHEMA.empty_table()
    ids = [cid for cid, m in maps.items() for _ in range(len(m))]
    frame = np.concatenate([np.arange(len(m), dtype=np.int32) for m in maps.values()])
    areas = np.concatenate([area_fractions(m) for m in maps.values()])
    cols = [pa.array(ids, pa.string()), pa.array(frame, pa.int32()),
            pa.array(np.concatenate([has_points[c] for c in maps]), pa.bool_())]
    cols += [pa.array(areas[:, i], pa.float32()) for i in range(len(LABELS))]
    return pa.Table.from_arrays(cols, schema=SCHEMA)


def run_shard(
    frames_path: str | os.PathLike[str],
    index_path: str | os.PathLike[str],
    landmarks_path: str | os.PathLike[str],
    maps_path: str | os.PathLike[str],
    stats_path: str | os.PathLike[str],
    failures_path: str | os.PathLike[str],
    params: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Parse every clip of a shard that has landmarks; write maps, stats and failures.

    Clips absent from the landmark shard failed there and are skipped (not re-reported).
    Missing parser weights raise before any clip is processed (a configuration error); an
    empty shard writes valid empty artifacts.
    """
    cfg = ParsingConfig.from_dict(params)
    landmarks = read_landmarks(landmarks_path)
    clip_ids = [c for c in index_clip_ids(index_path) if c in landmarks]
    choice = choose_backend(cfg)  # a pinned backend without weights stops here
    backend = load_models(cfg, choice) if clip_ids else choice.backend
    prepare_outputs([maps_path, stats_path, failures_path])

    def one(clip_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(label maps, per-frame has-points, eye-side votes): all or nothing per clip."""
        points = landmarks[clip_id].points
        label_maps = parse_clip(frames.get(clip_id), points, cfg)
        return label_maps, np.isfinite(points).all(axis=(1, 2)), eye_side_votes(label_maps, points)

    with open_frames(frames_path) as frames:
        run = run_clips(STAGE, shard_label(frames_path), clip_ids, one, source=str(frames_path))
    maps = {c: r[0] for c, r in run.results.items()}
    has_points = {c: r[1] for c, r in run.results.items()}
    # (eye regions on the landmark eyes' sides, checked)
    votes = sum((r[2] for r in run.results.values()), np.zeros(2, dtype=np.int64))
    model = model_name(cfg)
    summary = {"clips": len(maps), "failed_clips": len(run.failures),
               "frames": int(sum(len(m) for m in maps.values())),
               "eye_side_agreement": round(float(votes[0] / votes[1]), 6) if votes[1] else None}
    meta = provenance(STAGE, SCHEMA_VERSION, backend=backend, model=model, params=cfg.to_dict(),
                      backend_choice=choice.record(), labels=list(LABELS), **summary)
    finish_shard(run, [
        Output(maps_path, maps, meta),
        Output(stats_path, stats_table(maps, has_points), meta, SCHEMA),
        failures_output(run, failures_path, provenance(STAGE, SCHEMA_VERSION, backend=backend,
                                                       model=model, params=cfg.to_dict())),
    ])
    return summary
