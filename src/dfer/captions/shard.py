"""Captions of one shard: frames + landmarks in, one caption row per clip out.

The runner is backend-agnostic: it loads what the chosen :class:`Describer` needs (frames
from the safetensors shard, landmark points from the landmarks Parquet), hands clips over in
batches of ``batch_size``, refines each raw answer (emotion words out, raw text kept) and
writes the captions Parquet plus the failures table. Every per-clip problem -- a server that
is down, a timeout, an empty answer, a caption that is empty once refined -- is a failure
row; the shard itself always completes.

Only numpy/pyarrow/safetensors are imported at module level, so the same code runs in the
project venv (offline, openai) and in the separate vLLM environment (vllm).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from dfer.artifacts import provenance, write_failures, write_parquet
from dfer.captions.base import ClipInput, Describer, Description
from dfer.captions.prompt import render_prompt
from dfer.captions.refine import refine_caption
from dfer.captions.settings import CaptionsConfig
from dfer.landmark_table import clip_bounds, clip_ids, points_array, read_sorted

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

    Reads through :mod:`dfer.landmark_table` (not ``dfer.landmarks``, whose detectors the
    vLLM environment does not have).
    """
    table = read_sorted(path, ["clip_id", "frame", "has_face", "points"])
    ids = clip_ids(table)
    points = points_array(table, path)
    has_face = table.column("has_face").to_numpy(zero_copy_only=False).astype(bool)
    starts, stops = clip_bounds(ids)
    return {ids[a]: (points[a:b], has_face[a:b]) for a, b in zip(starts, stops, strict=True)}


def _batches(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def caption_rows(descriptions: Sequence[Description], cfg: CaptionsConfig, describer_name: str,
                 prompt_hash: str, source: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Split backend answers into caption rows and failure rows (refining the good ones)."""
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for d in descriptions:
        if not d.ok:
            failures.append({"clip_id": d.clip_id, "stage": STAGE, "source": source,
                             "error_type": str(d.error_type), "message": str(d.message)})
            continue
        caption = refine_caption(d.text)
        if not caption:
            failures.append({
                "clip_id": d.clip_id, "stage": STAGE, "source": source,
                "error_type": "EmptyAfterRefinement",
                "message": f"clip {d.clip_id}: nothing but emotion words in {d.text[:200]!r}",
            })
            continue
        rows.append({
            "clip_id": d.clip_id, "caption": caption, "raw_text": d.text,
            "backend": describer_name, "model": cfg.model,
            "prompt_version": cfg.prompt_version, "prompt_hash": prompt_hash,
            "num_tokens": int(d.num_tokens), "seconds": float(d.seconds),
        })
    return rows, failures


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
    from safetensors import safe_open

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

    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    backend_name = describer.name if describer is not None else cfg.backend
    try:
        with safe_open(str(frames_path), framework="numpy") as fh:
            keys = set(fh.keys())
            bar = tqdm(total=len(clip_ids), desc=f"captions {Path(index_path).name}", unit="clip")
            for batch in _batches(clip_ids, max(1, int(cfg.raw["batch_size"]))):
                clips: list[ClipInput] = []
                for cid in batch:
                    frames = fh.get_tensor(cid) if needs_frames and cid in keys else None
                    pts, face = points.get(cid, (None, None))
                    clips.append(ClipInput(cid, frames=frames, points=pts, has_face=face))
                missing = [c.clip_id for c in clips if needs_frames and c.frames is None]
                for cid in missing:
                    failures.append({"clip_id": cid, "stage": STAGE, "source": str(frames_path),
                                     "error_type": "MissingFrames",
                                     "message": f"clip {cid!r} is in the index but not in {frames_path}"})
                clips = [c for c in clips if c.clip_id not in missing]
                descriptions = describer.describe(clips, prompt) if clips else []
                if len(descriptions) != len(clips):
                    raise RuntimeError(f"backend {backend_name} returned {len(descriptions)} "
                                       f"answers for {len(clips)} clips")
                good, bad = caption_rows(descriptions, cfg, backend_name, phash, str(index_path))
                rows += good
                failures += bad
                bar.update(len(batch))
            bar.close()
    finally:
        if owned and describer is not None:
            describer.close()

    summary = {
        "clips": len(rows),
        "failed_clips": len(failures),
        "skipped_upstream": skipped,
        "tokens": int(sum(r["num_tokens"] for r in rows)),
        "failure_types": dict(sorted(_count(f["error_type"] for f in failures).items())),
    }
    params_out = {**cfg.raw, "prompt_hash": phash}
    model = describer.model if describer is not None else cfg.model
    meta = provenance(STAGE, SCHEMA_VERSION, backend=backend_name, model=model,
                      prompt_version=cfg.prompt_version, prompt_hash=phash,
                      params=params_out, **summary)
    table = pa.Table.from_pylist(rows, schema=SCHEMA) if rows else SCHEMA.empty_table()
    write_parquet(out_path, table, meta, schema=SCHEMA)
    write_failures(failures_path, failures, provenance(
        STAGE, SCHEMA_VERSION, backend=backend_name, model=model, prompt_hash=phash,
        params=params_out))
    return summary


def _count(values: Iterator[str] | Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out
