"""Landmarks of one shard: frames safetensors + index in, one Parquet row per (clip, frame) out.

The clip loop, failure rows and atomic writes are :mod:`dfer.core.shard_runner`'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dfer.core.artifacts import provenance
from dfer.core.shard_runner import (
    ErrorMap,
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
from dfer.landmarks.api import (
    NoFaceError,
    choose_backend,
    detect_landmarks,
    load_models,
    model_name,
)
from dfer.landmarks.config import LandmarksConfig
from dfer.landmarks.table import SCHEMA, results_table

STAGE = "landmarks"
SCHEMA_VERSION = 1

#: ``detect_landmarks`` raises NoFaceError (a ValueError) when no frame has a face.
KNOWN_ERRORS: ErrorMap = ((NoFaceError, ErrorType.NO_FACE),)

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
