"""The landmarks artifact's table: per-clip results flattened to one row per (clip, frame),
and read back (``landmarks/shard-{s}.parquet``, layout in docs/architecture.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from dfer.core.landmark_table import clip_bounds, clip_ids, points_array, read_sorted
from dfer.landmarks.api import LandmarkResult

SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("frame", pa.int32()),
        ("has_face", pa.bool_()),
        ("filled_from", pa.int16()),
        ("bbox", pa.list_(pa.float32(), 4)),
        ("score", pa.float32()),
        ("points", pa.list_(pa.float32(), 136)),
    ]
)


def results_table(results: Mapping[str, LandmarkResult]) -> pa.Table:
    """Flatten per-clip results into the landmark Parquet layout (clips in the given order)."""
    ids: list[str] = []
    parts: list[LandmarkResult] = []
    for clip_id, res in results.items():
        ids.extend([clip_id] * res.num_frames)
        parts.append(res)
    if not parts:
        return SCHEMA.empty_table()

    def cat(attr: str) -> np.ndarray:
        return np.concatenate([getattr(p, attr) for p in parts])

    frame = np.concatenate([np.arange(p.num_frames, dtype=np.int32) for p in parts])
    bbox = cat("bbox").astype(np.float32).reshape(-1)
    points = cat("points").astype(np.float32).reshape(-1)
    columns = [
        pa.array(ids, pa.string()),
        pa.array(frame, pa.int32()),
        pa.array(cat("has_face"), pa.bool_()),
        pa.array(cat("filled_from").astype(np.int16), pa.int16()),
        pa.FixedSizeListArray.from_arrays(pa.array(bbox, pa.float32()), 4),
        pa.array(cat("score").astype(np.float32), pa.float32()),
        pa.FixedSizeListArray.from_arrays(pa.array(points, pa.float32()), 136),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def read_landmarks(path: str | os.PathLike[str]) -> dict[str, LandmarkResult]:
    """Read a landmark shard back into per-clip results (frames sorted by index)."""
    table = read_sorted(path)
    if table.num_rows == 0:
        return {}
    clip = clip_ids(table)
    points = points_array(table, path)
    bbox = np.asarray(table.column("bbox").combine_chunks().flatten()).reshape(-1, 4)
    score = table.column("score").to_numpy()
    has_face = table.column("has_face").to_numpy()
    filled = table.column("filled_from").to_numpy()
    out: dict[str, LandmarkResult] = {}
    starts, ends = clip_bounds(clip)
    for a, b in zip(starts, ends, strict=True):
        out[str(clip[a])] = LandmarkResult(
            points[a:b].astype(np.float32), bbox[a:b].astype(np.float32),
            score[a:b].astype(np.float32), has_face[a:b].astype(bool), filled[a:b].astype(np.int16),
        )
    return out
