"""Synthetic captions-stage inputs: animated 68-point faces and the shard files around them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
from face_geometry import square_face

from dfer.core.artifacts import provenance, write_parquet, write_safetensors
from dfer.landmarks.table import SCHEMA as LANDMARKS_SCHEMA

INNER_TOP = [61, 62, 63]
INNER_BOTTOM = [65, 66, 67]
OUTER_BOTTOM = list(range(55, 60))
BROWS = list(range(17, 27))
UPPER_LIDS = [37, 38, 43, 44]
LOWER_LIDS = [40, 41, 46, 47]


def animate(kind: str, num_frames: int = 16) -> np.ndarray:
    """``[T, 68, 2]`` points of :func:`square_face` performing one movement ``kind``.

    still: nothing moves; mouth_open: the jaw drops (lower lips move down 30 px by the end);
    brow_raise: the eyebrows rise 14 px and come back; blink: the lids close on one frame.
    """
    base = square_face()
    pts = np.repeat(base[None], num_frames, axis=0).copy()
    ramp = np.linspace(0.0, 1.0, num_frames)
    if kind == "mouth_open":
        for idx in INNER_BOTTOM + OUTER_BOTTOM:
            pts[:, idx, 1] += 30 * ramp
    elif kind == "brow_raise":
        bump = np.sin(np.pi * ramp)
        for idx in BROWS:
            pts[:, idx, 1] -= 14 * bump
    elif kind == "blink":
        t = num_frames // 2
        for up, low in zip(UPPER_LIDS, LOWER_LIDS, strict=True):
            mid = (pts[t, up, 1] + pts[t, low, 1]) / 2
            pts[t, up, 1] = mid - 0.5
            pts[t, low, 1] = mid + 0.5
    elif kind != "still":
        raise ValueError(kind)
    return pts.astype(np.float32)


def write_shard(root: Path, clips: Mapping[str, np.ndarray | None], num_frames: int = 16,
                frame_side: int = 64, has_face: Mapping[str, np.ndarray] | None = None,
                frames_missing: tuple[str, ...] = (), identical_frames: bool = False,
                ) -> dict[str, Path]:
    """Write frames safetensors + index + landmarks Parquet for ``clips`` (id -> points).

    A clip whose points are None is in the frames index but not in the landmarks shard (it
    failed upstream). Frames are deterministic random noise of ``frame_side`` px, different
    per clip unless ``identical_frames``.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shape = (num_frames, frame_side, frame_side, 3)
    shared = rng.integers(0, 256, shape, dtype=np.uint8)
    frames = {cid: shared if identical_frames else rng.integers(0, 256, shape, dtype=np.uint8)
              for cid in clips if cid not in frames_missing}
    paths = {
        "frames": root / "frames.safetensors", "index": root / "index.parquet",
        "landmarks": root / "landmarks.parquet", "out": root / "captions.parquet",
        "failures": root / "captions.failures.parquet",
    }
    write_safetensors(paths["frames"], frames, provenance("decode", 1))
    write_parquet(paths["index"], pa.table({"clip_id": pa.array(list(clips), pa.string())}),
                  provenance("decode", 1))
    rows: dict[str, list] = {n: [] for n in LANDMARKS_SCHEMA.names}
    for cid, pts in clips.items():
        if pts is None:
            continue
        face = (has_face or {}).get(cid, np.ones(len(pts), bool))
        for t in range(len(pts)):
            rows["clip_id"].append(cid)
            rows["frame"].append(t)
            rows["has_face"].append(bool(face[t]))
            rows["filled_from"].append(-1)
            rows["bbox"].append([0.0, 0.0, 224.0, 224.0])
            rows["score"].append(1.0)
            rows["points"].append(pts[t].reshape(-1).tolist())
    write_parquet(paths["landmarks"], pa.table(rows, schema=LANDMARKS_SCHEMA),
                  provenance("landmarks", 1), schema=LANDMARKS_SCHEMA)
    return paths
