"""Landmarks of one shard: frames safetensors + index in, one Parquet row per (clip, frame) out.

The clip loop, failure rows and atomic writes are :mod:`dfer.core.shard_runner`'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dfer.core.artifacts import provenance
from dfer.core.landmark_table import clip_bounds, clip_ids, points_array, read_sorted
from dfer.core.shard_runner import (
    ErrorMap,
    ErrorType,
    Output,
    failures_output,
    finish_shard,
    open_frames,
    prepare_outputs,
    run_clips,
    shard_label,
)
from dfer.landmarks.api import (
    LandmarkResult,
    NoFaceError,
    choose_backend,
    detect_landmarks,
    load_models,
    model_name,
)
from dfer.landmarks.config import LandmarksConfig

STAGE = "landmarks"
SCHEMA_VERSION = 1

#: ``detect_landmarks`` raises NoFaceError (a ValueError) when no frame has a face.
KNOWN_ERRORS: ErrorMap = ((NoFaceError, ErrorType.NO_FACE),)

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


def index_clip_ids(index_path: str | os.PathLike[str]) -> list[str]:
    """Clip ids of a decode index, in index order (the order every shard output follows)."""
    return [str(c) for c in pq.read_table(index_path, columns=["clip_id"]).column("clip_id").to_pylist()]


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


def run_shard(
    frames_path: str | os.PathLike[str],
    index_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    failures_path: str | os.PathLike[str],
    params: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Detect landmarks for every clip of a decoded shard; write Parquet + failures.

    A clip that fails (no face on any frame, missing tensor, bad shape) becomes a failure
    row; the other clips complete. Missing model weights are a configuration error, not a
    clip's: they raise before any clip is processed. An empty shard (no clips) writes valid
    empty artifacts without loading any model. Returns the summary also stored in the
    provenance.
    """
    cfg = LandmarksConfig.from_dict(params)
    clip_ids = index_clip_ids(index_path)
    choice = choose_backend(cfg)  # a pinned backend without weights stops here
    backend = load_models(cfg, choice) if clip_ids else choice.backend
    prepare_outputs([out_path, failures_path])
    with open_frames(frames_path) as frames:
        run = run_clips(STAGE, shard_label(frames_path), clip_ids,
                        lambda clip_id: detect_landmarks(frames.get(clip_id), cfg),
                        source=str(frames_path), known=KNOWN_ERRORS)
    results = run.results
    frames_count = sum(r.num_frames for r in results.values())
    detected = sum(r.num_detected for r in results.values())
    summary = {
        "clips": len(results),
        "failed_clips": len(run.failures),
        "frames": frames_count,
        "detected_frames": detected,
        "filled_frames": sum(r.num_filled for r in results.values()),
        "detection_rate": round(detected / frames_count, 6) if frames_count else None,
    }
    base = {"backend": backend, "model": model_name(cfg), "params": cfg.to_dict()}
    finish_shard(run, [
        Output(out_path, results_table(results),
               provenance(STAGE, SCHEMA_VERSION, **base,
                          backend_choice=choice.record(), **summary), SCHEMA),
        failures_output(run, failures_path, provenance(STAGE, SCHEMA_VERSION, **base)),
    ])
    return summary
