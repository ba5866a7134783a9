"""A small synthetic dataset in the exact artifact layout, for tests and CPU benchmarks.

Each class is a bright square of a class-specific size moving in a class-specific direction
over a noisy background, so a tiny random-init backbone with adapters can learn it in a few
CPU minutes. All upstream artifacts are written with :mod:`dfer.core.artifacts` following the
contracts of docs/architecture.md: manifest (+ labels / num_folds metadata), frames shards and
index, landmarks, parsing maps and captions; ``failed`` clips are left out of a chosen stage's
index, as an upstream failure would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dfer.core.artifacts import provenance, write_failures, write_parquet, write_safetensors
from dfer.core.frame_sampling import spread_indices
from dfer.core.paths import manifest_file, shard_file
from dfer.core.shard_runner import ErrorType, failure_row
from dfer.core.sharding import shard_name, shard_of

DIRECTIONS = ["right", "left", "up", "down", "diagonally", "in a circle", "nowhere"]


def _clip(label: int, num_classes: int, frames: int, size: int, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames ``[T,S,S,3]``, label maps ``[T,S,S]`` and 68 points per frame ``[T,68,2]``."""
    angle = 2 * np.pi * label / num_classes
    side = int(size * (0.15 + 0.25 * label / max(1, num_classes - 1)))
    start = rng.uniform(0.3, 0.7, size=2) * size
    step = np.array([np.cos(angle), np.sin(angle)]) * size * 0.3 / max(1, frames - 1)
    video = rng.integers(0, 60, size=(frames, size, size, 3), dtype=np.uint8)
    maps = np.zeros((frames, size, size), dtype=np.uint8)
    points = np.zeros((frames, 68, 2), dtype=np.float32)
    colour = rng.integers(150, 256, size=3)
    theta = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    for t in range(frames):
        cx, cy = start + step * t
        x0, y0 = int(np.clip(cx - side / 2, 0, size - 1)), int(np.clip(cy - side / 2, 0, size - 1))
        x1, y1 = int(np.clip(x0 + side, 1, size)), int(np.clip(y0 + side, 1, size))
        video[t, y0:y1, x0:x1] = colour
        maps[t, y0:y1, x0:x1] = 1 + label % 10
        points[t, :, 0] = np.clip(cx + side / 2 * np.cos(theta), 0, size - 1)
        points[t, :, 1] = np.clip(cy + side / 2 * np.sin(theta), 0, size - 1)
    return video, maps, points


def write_synthetic_dataset(
    results: str | Path,
    dataset: str = "synthetic",
    num_classes: int = 5,
    clips_per_class: int = 8,
    num_folds: int = 2,
    frames: int = 8,
    size: int = 32,
    num_shards: int = 2,
    failed: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> list[str]:
    """Write every upstream artifact of a synthetic dataset; return its clip ids.

    ``labels``: the class names (default ``class0`` ...); methods whose class text comes from
    the class name (DFER-CLIP's descriptors) need real expression names.

    ``failed`` maps a stage (``frames``, ``landmarks``, ``parsing``, ``captions``) to clip ids
    that are absent from that stage's outputs (recorded in its failures table instead).
    """
    rng = np.random.default_rng(seed)
    labels = list(labels) if labels is not None else [f"class{c}" for c in range(num_classes)]
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for {num_classes} classes")
    failed = {k: set(v) for k, v in (failed or {}).items()}
    rows = []
    for c in range(num_classes):
        for j in range(clips_per_class):
            cid = f"{dataset}_{c:02d}_{j:03d}"
            rows.append({
                "clip_id": cid, "path": f"{cid}.mp4", "source_kind": "video", "label": labels[c],
                "label_idx": c, "test_fold": 1 + j % num_folds,
                "shard": shard_name(shard_of(cid, num_shards), num_shards),
            })
    manifest = pd.DataFrame(rows)
    meta = provenance("manifest", 1, layout="synthetic", labels=labels, num_folds=num_folds)
    write_parquet(manifest_file(results, dataset), manifest, meta)
    for s in range(num_shards):
        sname = shard_name(s, num_shards)
        part = manifest[manifest["shard"] == sname].reset_index(drop=True)
        write_parquet(shard_file(results, dataset, "manifest", sname, ".parquet"), part, meta)
        frames_out, maps_out, index_rows, lm_rows, cap_rows = {}, {}, [], [], []
        fails: dict[str, list[dict[str, str]]] = {k: [] for k in ("frames", "landmarks", "parsing", "captions")}
        for r in part.itertuples():
            video, maps, points = _clip(int(r.label_idx), num_classes, frames, size, rng)
            if r.clip_id in failed.get("frames", ()):
                fails["frames"].append(failure_row(r.clip_id, "decode", r.path, ErrorType.UNEXPECTED,
                                                   "synthetic failure"))
                continue
            frames_out[r.clip_id] = video
            index_rows.append({
                "clip_id": r.clip_id, "path": r.path, "source_kind": "video", "label": r.label,
                "label_idx": r.label_idx, "test_fold": r.test_fold, "fps": 25.0,
                "duration_s": frames / 25.0, "orig_width": size, "orig_height": size,
                "num_source_frames": frames, "frame_indices": list(range(frames)),
                "crop_box": [0.0, 0.0, float(size), float(size)], "face_found_frac": 1.0, "seconds": 0.0,
            })
            for stage, out in (("landmarks", None), ("parsing", maps_out), ("captions", None)):
                if r.clip_id in failed.get(stage, ()):
                    fails[stage].append(failure_row(r.clip_id, stage, r.path, ErrorType.UNEXPECTED,
                                                    "synthetic failure"))
                elif stage == "parsing" and out is not None:
                    out[r.clip_id] = maps
                elif stage == "landmarks":
                    for t in range(frames):
                        lm_rows.append({
                            "clip_id": r.clip_id, "frame": t, "has_face": True, "filled_from": t,
                            "bbox": [0.0, 0.0, float(size), float(size)], "score": 1.0,
                            "points": points[t].reshape(-1).tolist(),
                        })
                else:
                    direction = DIRECTIONS[int(r.label_idx) % len(DIRECTIONS)]
                    cap_rows.append({"clip_id": r.clip_id, "caption": f"A bright square moves {direction}."})
        smeta = {k: provenance(k, 1, backend="synthetic") for k in fails}
        write_safetensors(shard_file(results, dataset, "frames", sname, ".safetensors"), frames_out, smeta["frames"])
        index_cols = ["clip_id", "path", "source_kind", "label", "label_idx", "test_fold", "fps", "duration_s",
                      "orig_width", "orig_height", "num_source_frames", "frame_indices", "crop_box",
                      "face_found_frac", "seconds"]
        write_parquet(shard_file(results, dataset, "frames", sname, ".parquet"),
                      pd.DataFrame(index_rows, columns=index_cols), smeta["frames"])
        lm_cols = ["clip_id", "frame", "has_face", "filled_from", "bbox", "score", "points"]
        write_parquet(shard_file(results, dataset, "landmarks", sname, ".parquet"),
                      pd.DataFrame(lm_rows, columns=lm_cols), smeta["landmarks"])
        write_safetensors(shard_file(results, dataset, "parsing", sname, ".safetensors"), maps_out, smeta["parsing"])
        # the parsing stage's per-clip stats table: training reads its provenance, as in the pipeline
        write_parquet(shard_file(results, dataset, "parsing", sname, ".parquet"),
                      pd.DataFrame({"clip_id": list(maps_out)}, columns=["clip_id"]), smeta["parsing"])
        write_parquet(shard_file(results, dataset, "captions", sname, ".parquet"),
                      pd.DataFrame(cap_rows, columns=["clip_id", "caption"]), smeta["captions"])
        for stage, recs in fails.items():
            folder = "frames" if stage == "frames" else stage
            write_failures(shard_file(results, dataset, folder, sname, ".failures.parquet"), recs, smeta[stage])
    return manifest["clip_id"].tolist()


def simple_renderers() -> tuple:
    """Minimal stand-ins for :mod:`dfer.train.render` (tests): dots for points, grey levels for maps."""

    def render_landmarks(points: np.ndarray, size: int) -> np.ndarray:
        img = np.zeros((size, size, 3), dtype=np.uint8)
        xy = np.clip(np.round(points).astype(int), 0, size - 1)
        img[xy[:, 1], xy[:, 0]] = 255
        return img

    def render_parsing(label_map: np.ndarray, size: int) -> np.ndarray:
        grey = (label_map.astype(np.int32) * 25 % 256).astype(np.uint8)
        img = np.repeat(grey[:, :, None], 3, axis=2)
        if img.shape[0] != size:
            idx = spread_indices(img.shape[0], size)
            img = img[idx][:, idx]
        return img

    return render_landmarks, render_parsing
