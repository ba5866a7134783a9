"""Parsing of one shard: frames + landmarks in, label-map safetensors + area Parquet out."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from dfer.artifacts import provenance, write_failures, write_parquet, write_safetensors
from dfer.landmarks.shard import index_clip_ids, read_landmarks
from dfer.parsing.api import load_models, model_name, parse_clip, resolve_backend
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
    from safetensors import safe_open

    cfg = ParsingConfig.from_dict(params)
    landmarks = read_landmarks(landmarks_path)
    clip_ids = [c for c in index_clip_ids(index_path) if c in landmarks]
    backend = load_models(cfg) if clip_ids else resolve_backend(cfg)
    maps: dict[str, np.ndarray] = {}
    has_points: dict[str, np.ndarray] = {}
    failures: list[dict[str, str]] = []
    votes = np.zeros(2, dtype=np.int64)  # (eye regions on the landmark eyes' sides, checked)
    with safe_open(str(frames_path), framework="numpy") as fh:
        keys = set(fh.keys())
        for clip_id in tqdm(clip_ids, desc=f"parsing {Path(frames_path).name}", unit="clip"):
            try:
                if clip_id not in keys:
                    raise KeyError(f"clip {clip_id!r} is in the index but not in {frames_path}")
                points = landmarks[clip_id].points
                label_maps = parse_clip(fh.get_tensor(clip_id), points, cfg)
                clip_votes = eye_side_votes(label_maps, points)
                maps[clip_id] = label_maps  # only a fully processed clip enters the outputs
                has_points[clip_id] = np.isfinite(points).all(axis=(1, 2))
                votes += clip_votes
            except Exception as exc:  # noqa: BLE001 - any per-clip error becomes a failure row
                failures.append({
                    "clip_id": clip_id, "stage": STAGE, "source": str(frames_path),
                    "error_type": type(exc).__name__, "message": f"clip {clip_id}: {exc}",
                })
    model = model_name(cfg)
    summary = {"clips": len(maps), "failed_clips": len(failures),
               "frames": int(sum(len(m) for m in maps.values())),
               "eye_side_agreement": round(float(votes[0] / votes[1]), 6) if votes[1] else None}
    meta = provenance(STAGE, SCHEMA_VERSION, backend=backend, model=model, params=cfg.to_dict(),
                      labels=list(LABELS), **summary)
    write_safetensors(maps_path, maps, meta)
    write_parquet(stats_path, stats_table(maps, has_points), meta, schema=SCHEMA)
    write_failures(failures_path, failures,
                   provenance(STAGE, SCHEMA_VERSION, backend=backend, model=model, params=cfg.to_dict()))
    return summary
