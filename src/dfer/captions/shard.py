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
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dfer.captions.base import ClipInput, Describer, Description
from dfer.captions.config import CaptionsConfig
from dfer.captions.prompt import render_prompt
from dfer.captions.refine import refine_caption
from dfer.core.artifacts import provenance
from dfer.core.landmark_table import clip_bounds, clip_ids, points_array, read_sorted
from dfer.core.shard_runner import (
    ClipFailure,
    ErrorType,
    Output,
    failures_output,
    finish_shard,
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


def make_describer(cfg: CaptionsConfig) -> Describer:
    """The backend named by ``cfg.backend`` (vLLM is imported only when asked for)."""
    if cfg.backend == "offline":
        from dfer.captions.offline import OfflineDescriber

        return OfflineDescriber(cfg.model)
    if cfg.backend == "openai":
        from dfer.captions.openai_client import OpenAIDescriber

        return OpenAIDescriber(cfg.raw["openai"], cfg.sampling())
    if cfg.backend == "vllm":
        from dfer.captions.vllm_backend import VLLMDescriber

        return VLLMDescriber(cfg.raw["vllm"], cfg.sampling())
    raise ValueError(f"unknown captions backend {cfg.backend!r}")


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


def caption_row(d: Description, cfg: CaptionsConfig, describer_name: str,
                prompt_hash: str) -> dict[str, Any]:
    """The captions row of a backend's answer (refined), or ``ClipFailure`` when there is none.

    A failed answer keeps its ``error_type`` (already in the vocabulary: see
    ``dfer.captions.base``); an answer that is nothing but an emotion judgement fails with
    ``empty_after_refinement``, its raw text quoted in the message.
    """
    if not d.ok:
        raise ClipFailure(str(d.error_type), str(d.message))
    caption = refine_caption(d.text)
    if not caption:
        raise ClipFailure(ErrorType.EMPTY_AFTER_REFINEMENT,
                          f"nothing but emotion words in {d.text[:200]!r}")
    return {
        "clip_id": d.clip_id, "caption": caption, "raw_text": d.text,
        "backend": describer_name, "model": cfg.model,
        "prompt_version": cfg.prompt_version, "prompt_hash": prompt_hash,
        "num_tokens": int(d.num_tokens), "seconds": float(d.seconds),
    }


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
    phash = cfg.prompt_hash()
    prompt = render_prompt(cfg.prompt_version, cfg.num_frames)
    clip_ids = [str(c) for c in pq.read_table(index_path, columns=["clip_id"])
                .column("clip_id").to_pylist()]
    points = read_points(landmarks_path)
    owned = describer is None
    if describer is None and clip_ids:
        describer = make_describer(cfg)
    needs_landmarks = describer.needs_landmarks if describer is not None else cfg.backend == "offline"
    needs_frames = describer.needs_frames if describer is not None else cfg.backend != "offline"
    skipped = 0
    if needs_landmarks:
        skipped = sum(c not in points for c in clip_ids)
        clip_ids = [c for c in clip_ids if c in points]
    backend_name = describer.name if describer is not None else cfg.backend
    prepare_outputs([out_path, failures_path])

    def describe_batch(batch: list[str]) -> list[dict[str, Any] | BaseException]:
        """One batch through the backend: a captions row or the clip's failure, per clip."""
        outcomes: dict[str, dict[str, Any] | BaseException] = {}
        clips: list[ClipInput] = []
        for cid in batch:
            try:
                frames_in = frames.get(cid) if needs_frames else None
            except ClipFailure as exc:  # missing_frames: the frames shard is its source
                outcomes[cid] = ClipFailure(exc.error_type, str(exc), source=str(frames_path))
                continue
            pts, face = points.get(cid, (None, None))
            clips.append(ClipInput(cid, frames=frames_in, points=pts, has_face=face))
        descriptions = describer.describe(clips, prompt) if clips else []
        if len(descriptions) != len(clips):
            raise RuntimeError(f"backend {backend_name} returned {len(descriptions)} "
                               f"answers for {len(clips)} clips")
        for clip, d in zip(clips, descriptions, strict=True):
            try:
                outcomes[clip.clip_id] = caption_row(d, cfg, backend_name, phash)
            except ClipFailure as exc:
                outcomes[clip.clip_id] = exc
        return [outcomes[cid] for cid in batch]

    try:
        with open_frames(frames_path) as frames:
            run = run_batches(STAGE, shard_label(index_path), clip_ids, describe_batch,
                              batch_size=int(cfg.raw["batch_size"]), source=str(index_path))
    finally:
        if owned and describer is not None:
            describer.close()

    rows = list(run.results.values())
    summary = {
        "clips": len(rows),
        "failed_clips": len(run.failures),
        "skipped_upstream": skipped,
        "tokens": int(sum(r["num_tokens"] for r in rows)),
        "failure_types": run.failure_counts(),
    }
    params_out = {**cfg.raw, "prompt_hash": phash}
    model = describer.model if describer is not None else cfg.model
    meta = provenance(STAGE, SCHEMA_VERSION, backend=backend_name, model=model,
                      prompt_version=cfg.prompt_version, prompt_hash=phash,
                      params=params_out, **summary)
    table = pa.Table.from_pylist(rows, schema=SCHEMA) if rows else SCHEMA.empty_table()
    finish_shard(run, [
        Output(out_path, table, meta, SCHEMA),
        failures_output(run, failures_path, provenance(
            STAGE, SCHEMA_VERSION, backend=backend_name, model=model, prompt_hash=phash,
            params=params_out)),
    ])
    return summary
