"""Decode every clip of one shard manifest into the frames artifacts.

Outputs (see docs/architecture.md): ``frames/shard-{s}.safetensors`` (key clip_id -> uint8
[T, S, S, 3]), ``frames/shard-{s}.parquet`` (one row per decoded clip) and
``frames/shard-{s}.failures.parquet`` (one row per clip that could not be decoded). A clip
that fails never stops the shard; every file is written atomically, so a killed run leaves
the previous complete files (or none), never a partial one.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dfer.artifacts import provenance, write_failures, write_parquet, write_safetensors
from dfer.manifests.build import MANIFEST_SCHEMA
from dfer.video.clip import DecodeConfig, decode_clip
from dfer.video.errors import DecodeError

log = logging.getLogger(__name__)

STAGE = "decode"
SCHEMA_VERSION = 1

#: Manifest columns copied into the frames index.
MANIFEST_FIELDS = ("clip_id", "path", "source_kind", "label", "label_idx", "test_fold")

INDEX_SCHEMA = pa.schema([
    *(MANIFEST_SCHEMA.field(name) for name in MANIFEST_FIELDS),
    ("fps", pa.float64()),
    ("duration_s", pa.float64()),
    ("orig_width", pa.int32()),
    ("orig_height", pa.int32()),
    ("num_source_frames", pa.int32()),
    ("frame_indices", pa.list_(pa.int32())),
    ("crop_box", pa.list_(pa.float32(), 4)),
    ("face_found_frac", pa.float32()),
    ("seconds", pa.float64()),
])


@dataclass(frozen=True)
class ShardResult:
    """How a shard went: clips decoded and clips recorded as failures."""

    decoded: int
    failed: int


def decode_provenance(cfg: DecodeConfig) -> dict[str, Any]:
    """Provenance block of every decode artifact (no paths, no times: byte-stable)."""
    import av
    import cv2
    import dlib

    return provenance(
        STAGE, SCHEMA_VERSION,
        backend="pyav",
        detector=f"dlib-{cfg.detector}",
        model=None,
        params=cfg.as_dict(),
        versions={"av": av.__version__, "dlib": dlib.__version__, "opencv": cv2.__version__},
    )


def read_shard_manifest(path: str | os.PathLike[str]) -> pa.Table:
    """The shard manifest, checked for the columns and unique clip ids decode relies on."""
    table = pq.read_table(path)
    missing = [c for c in MANIFEST_FIELDS if c not in table.column_names]
    if missing:
        raise ValueError(f"shard manifest {path} lacks column(s) {missing}; "
                         f"it has {table.column_names}")
    ids = table.column("clip_id").to_pylist()
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"shard manifest {path} lists clip id(s) more than once: {dupes[:10]}")
    return table.select(list(MANIFEST_FIELDS))


def decode_rows(rows: list[Mapping[str, Any]], cfg: DecodeConfig, progress: bool = True,
                desc: str = "decode") -> tuple[dict[str, np.ndarray], list[dict[str, Any]],
                                               list[dict[str, Any]]]:
    """Decode manifest rows; returns (crops by clip id, index rows, failure rows)."""
    from tqdm import tqdm

    frames: dict[str, np.ndarray] = {}
    index: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for row in tqdm(rows, desc=desc, unit="clip", disable=not progress):
        clip_id, path = str(row["clip_id"]), str(row["path"])
        try:
            clip = decode_clip(path, row["source_kind"], cfg)
        except DecodeError as exc:
            failures.append(_failure(clip_id, path, exc.error_type, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad clip must not sink the shard
            log.exception("clip %s: unexpected error while decoding %s", clip_id, path)
            failures.append(_failure(clip_id, path, "unexpected",
                                     f"{type(exc).__name__}: {exc}"))
            continue
        frames[clip_id] = clip.frames
        index.append({**{k: row[k] for k in MANIFEST_FIELDS}, **clip.info()})
    return frames, index, failures


def _failure(clip_id: str, path: str, error_type: str, message: str) -> dict[str, Any]:
    return {"clip_id": clip_id, "stage": STAGE, "source": path, "error_type": error_type,
            "message": f"clip {clip_id}: {message}"}


def index_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """Frames-index rows as an Arrow table of ``INDEX_SCHEMA`` (valid when empty)."""
    columns = {name: [r[name] for r in rows] for name in INDEX_SCHEMA.names}
    columns["frame_indices"] = [np.asarray(v, dtype=np.int32).tolist()
                                for v in columns["frame_indices"]]
    columns["crop_box"] = [np.asarray(v, dtype=np.float32).tolist() for v in columns["crop_box"]]
    return pa.table(columns, schema=INDEX_SCHEMA)


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files a killed earlier run left next to ``path`` (``.{name}.*.tmp``).

    ``dfer.artifacts.atomic_path`` cleans up after exceptions, but a SIGKILL (OOM killer,
    cluster pre-emption) leaves its hidden temp file behind; one job owns each output, so any
    such file is an orphan, and a large one (a frames shard) is worth reclaiming.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if stale:
        log.warning("removed %d temp file(s) of an interrupted run next to %s", len(stale), path)
    return stale


def decode_shard(
    manifest: str | os.PathLike[str],
    out_frames: str | os.PathLike[str],
    out_index: str | os.PathLike[str],
    out_failures: str | os.PathLike[str],
    params: DecodeConfig | Mapping[str, Any] | None = None,
    progress: bool = True,
) -> ShardResult:
    """Decode every clip of ``manifest`` and write the three frames artifacts atomically."""
    cfg = params if isinstance(params, DecodeConfig) else DecodeConfig.from_params(params)
    table = read_shard_manifest(manifest)
    for out in (out_frames, out_index, out_failures):
        remove_stale_temps(out)
    rows = table.to_pylist()
    frames, index, failures = decode_rows(rows, cfg, progress=progress,
                                          desc=f"decode {Path(manifest).stem}")
    meta = decode_provenance(cfg)
    # Each file is replaced atomically; the index (the Snakemake target and what readers
    # open first) goes last, so a complete index always comes with its frames and failures.
    write_safetensors(out_frames, frames, meta)
    write_failures(out_failures, failures, meta)
    write_parquet(out_index, index_table(index), meta)
    for f in failures:
        log.warning("%s (%s)", f["message"], f["error_type"])
    log.info("%s: %d clip(s) decoded, %d failed", manifest, len(index), len(failures))
    return ShardResult(decoded=len(index), failed=len(failures))
