"""Decode every clip of one shard manifest into the frames artifacts.

Outputs (see docs/architecture.md): ``frames/shard-{s}.safetensors`` (key clip_id -> uint8
[T, S, S, 3]), ``frames/shard-{s}.parquet`` (one row per decoded clip) and
``frames/shard-{s}.failures.parquet`` (one row per clip that could not be decoded). A clip
that fails never stops the shard; every file is written atomically, so a killed run leaves
the previous complete files (or none), never a partial one. The clip loop, failure rows and
writes are :mod:`dfer.core.shard_runner`'s; this module adds decode's inputs and outputs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dfer.core.artifacts import provenance
from dfer.core.integrity import require
from dfer.core.shard_runner import (
    Output,
    ShardRun,
    failures_output,
    finish_shard,
    prepare_outputs,
    run_clips,
    shard_label,
)
from dfer.manifests.build import MANIFEST_SCHEMA
from dfer.video.api import decode_clip
from dfer.video.config import DecodeConfig

log = logging.getLogger(__name__)

STAGE = "decode"
SCHEMA_VERSION = 1

#: What to change when the detector finds no face: every message about it names these keys.
NO_FACE_ADVICE = ("raise decode.upsample (1 finds faces under ~80 px, ~4x slower) or set "
                  "decode.detector: mmod; decode.on_no_face: fail records such clips as failures")

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
    # which detector setting found the face ("hog-up0"; "hog-up1" / "mmod-up0" when the first
    # pass found none and decode.escalate did; null: no face, a centre crop) and on how many
    # examined frames; per-frame crop boxes in `crop: track` mode (null under `median`).
    # Columns added to schema version 1 (readers select columns by name).
    ("detector_used", pa.string()),
    ("face_frames", pa.int32()),
    ("crop_boxes", pa.list_(pa.list_(pa.float32(), 4))),
    # a frame folder's unreadable images skipped (decode.max_bad_frames), and sampled frames
    # resized to the first sampled frame's size (images, or a video's frames, of another size)
    ("bad_frames", pa.int32()),
    ("resized_frames", pa.int32()),
    ("seconds", pa.float64()),
])


@dataclass(frozen=True)
class ShardResult:
    """How a shard went: clips decoded, clips recorded as failures, and clips decoded with no
    face found (kept as a centre crop under ``on_no_face: center``): the later stages and
    training usually lose those, so they are counted where a person looks."""

    decoded: int
    failed: int
    no_face: int = 0
    #: clips whose source has a single frame, repeated as the whole clip (``data.one_frame_clips``)
    one_frame: int = 0

    def summary(self) -> str:
        """``6 clip(s) decoded, 0 failed, 1 with no face found (centre crop), 1 one-frame``."""
        text = f"{self.decoded} clip(s) decoded, {self.failed} failed"
        if self.no_face:
            text += f", {self.no_face} with no face found (centre crop)"
        if self.one_frame:
            text += f", {self.one_frame} from a single source frame (repeated)"
        return text


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
        params=cfg.provenance_params(),
        versions={"av": av.__version__, "dlib": dlib.__version__, "opencv": cv2.__version__},
    )


def read_shard_manifest(path: str | os.PathLike[str]) -> pa.Table:
    """The shard manifest, checked for the columns and unique clip ids decode relies on."""
    require(path)
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
                desc: str = "shard", threads: int = 0) -> ShardRun[dict[str, Any]]:
    """Decode manifest rows on the shard runner; results are ``{"frames", "info"}`` per clip.

    ``desc`` names the shard in the progress bar; ``threads``: video decoder threads (0: one
    per core). ``decode_clip`` is looked up at call time, so a test can stand in for it.
    """
    by_id = {str(row["clip_id"]): row for row in rows}

    def one(clip_id: str) -> dict[str, Any]:
        row = by_id[clip_id]
        clip = decode_clip(str(row["path"]), row["source_kind"], cfg, threads=threads)
        return {"frames": clip.frames, "bad": list(clip.bad_frames),
                "info": {**{k: row[k] for k in MANIFEST_FIELDS}, **clip.info()}}

    return run_clips(STAGE, desc, list(by_id), one,
                     source=lambda clip_id: str(by_id[clip_id]["path"]), progress=progress)


def index_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """Frames-index rows as an Arrow table of ``INDEX_SCHEMA`` (valid when empty)."""
    columns = {name: [r[name] for r in rows] for name in INDEX_SCHEMA.names}
    columns["frame_indices"] = [np.asarray(v, dtype=np.int32).tolist()
                                for v in columns["frame_indices"]]
    columns["crop_box"] = [np.asarray(v, dtype=np.float32).tolist() for v in columns["crop_box"]]
    columns["crop_boxes"] = [None if v is None else np.asarray(v, dtype=np.float32).tolist()
                             for v in columns["crop_boxes"]]
    return pa.table(columns, schema=INDEX_SCHEMA)


def _log_repairs(shard: str, run: ShardRun[dict[str, Any]]) -> None:
    """One warning per clip kept without some of its images, or with frames resized: the
    frames index counts them (``bad_frames``, ``resized_frames``), the log names them."""
    for clip_id, result in run.results.items():
        bad, resized = result["bad"], result["info"]["resized_frames"]
        if bad:
            log.warning("decode %s: clip %s: %d unreadable image(s) skipped, sampled from the "
                        "good ones: %s", shard, clip_id, len(bad), ", ".join(bad[:20]))
        if resized:
            log.warning("decode %s: clip %s: %d sampled frame(s) differ in size from its first "
                        "one and were resized to it", shard, clip_id, resized)


def decode_shard(
    manifest: str | os.PathLike[str],
    out_frames: str | os.PathLike[str],
    out_index: str | os.PathLike[str],
    out_failures: str | os.PathLike[str],
    params: DecodeConfig | Mapping[str, Any] | None = None,
    progress: bool = True,
    threads: int = 0,
) -> ShardResult:
    """Decode every clip of ``manifest`` and write the three frames artifacts atomically.

    ``threads``: video decoder threads per clip (0: one per core; ``dfer decode`` passes its
    Snakemake job's ``threads``). The artifacts are the same bytes for any value.
    """
    cfg = params if isinstance(params, DecodeConfig) else DecodeConfig.from_params(params)
    table = read_shard_manifest(manifest)
    prepare_outputs([out_frames, out_index, out_failures])
    run = decode_rows(table.to_pylist(), cfg, progress=progress, desc=shard_label(manifest),
                      threads=threads)
    meta = decode_provenance(cfg)
    # the index (the Snakemake target and what readers open first) goes last, so a complete
    # index always comes with its frames and failures
    finish_shard(run, [
        Output(out_frames, {c: r["frames"] for c, r in run.results.items()}, meta),
        failures_output(run, out_failures, meta),
        Output(out_index, index_table([r["info"] for r in run.results.values()]), meta),
    ])
    _log_repairs(shard_label(manifest), run)
    faceless = sorted(c for c, r in run.results.items() if r["info"]["face_found_frac"] <= 0)
    if faceless:
        shown = ", ".join(faceless[:10]) + (" ..." if len(faceless) > 10 else "")
        log.warning("decode %s: no face found in %d clip(s), kept as a centre crop: %s. "
                    "Landmarks usually fail them and training then drops them; %s",
                    shard_label(manifest), len(faceless), shown, NO_FACE_ADVICE)
    one_frame = sorted(c for c, r in run.results.items() if r["info"]["num_source_frames"] == 1)
    if one_frame:
        shown = ", ".join(one_frame[:10]) + (" ..." if len(one_frame) > 10 else "")
        log.warning("decode %s: %d clip(s) have a single source frame, repeated as the whole "
                    "clip: %s (training flags them; data.one_frame_clips: drop leaves them out)",
                    shard_label(manifest), len(one_frame), shown)
    return ShardResult(decoded=len(run.results), failed=len(run.failures), no_face=len(faceless),
                       one_frame=len(one_frame))
