"""Captions of one shard: frames + landmarks in, one caption row per clip out.

The stage is backend-agnostic: it loads what the chosen :class:`Describer` needs (frames
from the safetensors shard, landmark points from the landmarks Parquet), and the shared shard
runner (:mod:`dfer.core.shard_runner`) hands clips over in batches of ``batch_size``; each raw
answer is refined (emotion words out, raw text kept) and the runner writes the captions
Parquet plus the failures table. Every per-clip problem -- a server that is down, a timeout,
an empty answer, a caption that is empty once refined -- is a failure row; the shard itself
always completes.

Only numpy/pyarrow/safetensors/tqdm (and pandas, through ``dfer.core.artifacts``) are imported at
module level, so the same code runs in the project venv (offline, openai) and in the separate
vLLM environment (vllm).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dfer.captions.api import describe_clips, make_describer
from dfer.captions.base import ClipInput, Describer
from dfer.captions.config import CaptionsConfig
from dfer.captions.prompt import render_prompt
from dfer.core.artifacts import provenance
from dfer.core.landmark_table import clip_bounds, clip_ids, points_array, read_sorted
from dfer.core.shard_runner import (
    ClipFailure,
    FrameShard,
    Output,
    ShardRun,
    failures_output,
    finish_shard,
    index_clip_ids,
    open_frames,
    prepare_outputs,
    run_batches,
    shard_label,
)

STAGE = "captions"
SCHEMA_VERSION = 1

SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("caption", pa.string()),
    ("raw_text", pa.string()),
    ("backend", pa.string()),
    ("model", pa.string()),
    ("prompt_version", pa.string()),
    ("prompt_hash", pa.string()),
    ("num_tokens", pa.int32()),
    ("seconds", pa.float64()),
])


def read_points(path: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """clip_id -> (points ``[T, 68, 2]`` float32, has_face ``[T]`` bool) from a landmarks shard.

    Reads through :mod:`dfer.core.landmark_table` (not ``dfer.landmarks``, whose detectors the
    vLLM environment does not have).
    """
    table = read_sorted(path, ["clip_id", "frame", "has_face", "points"])
    ids = clip_ids(table)
    points = points_array(table, path)
    has_face = table.column("has_face").to_numpy(zero_copy_only=False).astype(bool)
    starts, stops = clip_bounds(ids)
    return {ids[a]: (points[a:b], has_face[a:b]) for a, b in zip(starts, stops, strict=True)}


@dataclass
class CaptionBatches:
    """One shard's captioning, as the runner's two steps: read a clip, describe a batch."""

    cfg: CaptionsConfig
    describer: Describer
    prompt: str
    prompt_hash: str
    points: dict[str, tuple[np.ndarray, np.ndarray]]
    frames: FrameShard
    needs_frames: bool

    def clip_input(self, clip_id: str) -> ClipInput:
        """What the backend sees of one clip; a clip absent from the frames shard fails with
        ``missing_frames`` and the frames shard as its source."""
        try:
            frames = self.frames.get(clip_id) if self.needs_frames else None
        except ClipFailure as exc:
            raise ClipFailure(exc.error_type, str(exc), source=self.frames.path) from None
        points, has_face = self.points.get(clip_id, (None, None))
        return ClipInput(clip_id, frames=frames, points=points, has_face=has_face)

    def describe(self, clips: list[ClipInput]) -> list[dict[str, Any] | BaseException]:
        """One batch through the backend: a captions row or the clip's failure, per clip."""
        return describe_clips(self.describer, clips, self.prompt, self.cfg, self.prompt_hash)


def run_shard(
    frames_path: str | os.PathLike[str],
    index_path: str | os.PathLike[str],
    landmarks_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    failures_path: str | os.PathLike[str],
    params: Mapping[str, Any] | None,
    describer: Describer | None = None,
) -> dict[str, Any]:
    """Caption every clip of a shard; write ``captions/shard-{s}.parquet`` and its failures.

    Clips follow the frames index order. A backend that needs landmarks skips clips absent
    from the landmarks shard (they failed upstream and are reported there). ``describer``
    overrides the configured backend (tests, benchmarks). An empty shard writes valid empty
    artifacts without starting any engine. Returns the summary stored in the provenance.
    """
    cfg = CaptionsConfig.from_params(params)
    points = read_points(landmarks_path)
    clip_ids = index_clip_ids(index_path)
    owned = describer is None and bool(clip_ids)
    if owned:
        describer = make_describer(cfg)
    needs_landmarks = describer.needs_landmarks if describer is not None else cfg.backend == "offline"
    skipped = sum(c not in points for c in clip_ids) if needs_landmarks else 0
    if needs_landmarks:
        clip_ids = [c for c in clip_ids if c in points]
    backend_name = describer.name if describer is not None else cfg.backend
    model = describer.model if describer is not None else cfg.model
    prepare_outputs([out_path, failures_path])
    try:
        with open_frames(frames_path) as frames:
            job = CaptionBatches(cfg, describer, render_prompt(cfg.prompt_version, cfg.num_frames),
                                 cfg.prompt_hash(), points, frames,
                                 describer.needs_frames if describer is not None else False)
            run = run_batches(STAGE, shard_label(index_path), clip_ids, job.describe,
                              batch_size=int(cfg.raw["batch_size"]), source=str(index_path),
                              prepare=job.clip_input)
    finally:
        if owned:
            describer.close()
    # a backend's own counts (openai: answers dropped over the size cap)
    backend_counts = dict(describer.summary()) if hasattr(describer, "summary") else {}
    write_outputs(run, cfg, skipped, backend_name, model, out_path, failures_path, backend_counts)
    return run_summary(run, skipped, backend_counts)


def run_summary(run: ShardRun[dict[str, Any]], skipped: int,
                backend_counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The counts a captions shard records in its provenance (and returns).

    ``captions_cut_at_77``: captions longer than CLIP's 77-token context, whose tail the text
    encoder never reads (None where open_clip's tokenizer is not importable, as in the vLLM
    environment; the report then counts from the table). ``backend_counts``: a backend's own
    counts (openai: answers dropped over the size cap).
    """
    from dfer.captions.clip_tokens import captions_cut

    rows = list(run.results.values())
    return {
        "clips": len(rows),
        "failed_clips": len(run.failures),
        "skipped_upstream": skipped,
        "tokens": int(sum(r["num_tokens"] for r in rows)),
        "failure_types": run.failure_counts(),
        **(backend_counts or {}),
        "captions_cut_at_77": captions_cut(r["caption"] for r in rows),
    }


def write_outputs(run: ShardRun[dict[str, Any]], cfg: CaptionsConfig, skipped: int,
                  backend_name: str, model: str, out_path: str | os.PathLike[str],
                  failures_path: str | os.PathLike[str],
                  backend_counts: Mapping[str, int] | None = None) -> None:
    """The captions table and the failures table, each with its provenance."""
    phash = cfg.prompt_hash()
    params_out = {**cfg.raw, "prompt_hash": phash}
    meta = provenance(STAGE, SCHEMA_VERSION, backend=backend_name, model=model,
                      prompt_version=cfg.prompt_version, prompt_hash=phash,
                      params=params_out, **run_summary(run, skipped, backend_counts))
    rows = list(run.results.values())
    table = pa.Table.from_pylist(rows, schema=SCHEMA) if rows else SCHEMA.empty_table()
    finish_shard(run, [
        Output(out_path, table, meta, SCHEMA),
        failures_output(run, failures_path, provenance(
            STAGE, SCHEMA_VERSION, backend=backend_name, model=model, prompt_hash=phash,
            params=params_out)),
    ])
