"""Per-clip, in-memory decode: sampled frames -> face box -> square face crops.

``decode_clip`` is what the shard runner calls for every manifest row and what ``dfer
predict`` calls on a user's video; it touches no artifact files.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dfer.face_detect import DetectorKind
from dfer.frame_sampling import sample_indices
from dfer.strict_config import from_mapping
from dfer.video.crop import center_box, crop_resize, detect_boxes, median_box, square_box
from dfer.video.errors import DecodeError, NoFace
from dfer.video.reader import SampledFrames, read_frame_folder, read_video

SourceKind = Literal["video", "frames"]


@dataclass(frozen=True)
class DecodeConfig:
    """The ``decode`` section of the config (see config/config.yaml for the meaning)."""

    num_frames: int = 16
    size: int = 224
    detector: DetectorKind = "hog"
    upsample: int = 0
    margin: float = 0.25
    on_no_face: Literal["center", "fail"] = "center"
    detect_frames: int = 8
    detect_max_side: int = 640
    folder_fps: float | None = None

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"decode.num_frames must be >= 1, got {self.num_frames}")
        if self.size < 1:
            raise ValueError(f"decode.size must be >= 1, got {self.size}")
        if self.detector not in ("hog", "mmod"):
            raise ValueError(f"decode.detector must be 'hog' or 'mmod', got {self.detector!r}")
        if self.on_no_face not in ("center", "fail"):
            raise ValueError(f"decode.on_no_face must be 'center' or 'fail', got {self.on_no_face!r}")
        if self.margin < 0:
            raise ValueError(f"decode.margin must be >= 0, got {self.margin}")
        if self.detect_frames < 0:
            raise ValueError(f"decode.detect_frames must be >= 0, got {self.detect_frames}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> DecodeConfig:
        """Build from the config section; unknown keys are an error (typos must not pass)."""
        return from_mapping(cls, params, "decode option")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class DecodedClip:
    """Face crops of one clip plus the fields of its row in the frames index."""

    frames: np.ndarray  # uint8 [T, S, S, 3] RGB
    frame_indices: np.ndarray  # int32 [T]
    num_source_frames: int
    fps: float
    duration_s: float
    orig_width: int
    orig_height: int
    crop_box: np.ndarray  # float32 [4] x0, y0, x1, y1 in source pixels
    face_found_frac: float
    seconds: float

    def info(self) -> dict[str, Any]:
        """The frames-index fields of this clip (everything but the pixels)."""
        return {
            "fps": float(self.fps),
            "duration_s": float(self.duration_s),
            "orig_width": int(self.orig_width),
            "orig_height": int(self.orig_height),
            "num_source_frames": int(self.num_source_frames),
            "frame_indices": self.frame_indices.astype(np.int32),
            "crop_box": self.crop_box.astype(np.float32),
            "face_found_frac": float(self.face_found_frac),
            "seconds": float(self.seconds),
        }


def _detection_subset(num: int, wanted: int) -> np.ndarray:
    """Which of the T sampled frames the detector examines (evenly spread; 0 = all)."""
    if wanted <= 0 or wanted >= num:
        return np.arange(num)
    return np.unique(((2 * np.arange(wanted) + 1) * num) // (2 * wanted))


def read_sampled(path: str | os.PathLike[str], source_kind: SourceKind,
                 cfg: DecodeConfig) -> SampledFrames:
    """The uniformly sampled full frames of a video file or frame folder."""
    if source_kind == "video":
        return read_video(path, cfg.num_frames)
    if source_kind == "frames":
        return read_frame_folder(path, cfg.num_frames, fps=cfg.folder_fps)
    raise DecodeError(f"{path}: unknown source_kind {source_kind!r} (expected 'video' or 'frames')")


def face_crop_box(sampled: SampledFrames, cfg: DecodeConfig) -> tuple[np.ndarray, float]:
    """The clip's square crop box and the fraction of examined frames with a face."""
    subset = _detection_subset(len(sampled.frames), cfg.detect_frames)
    boxes = detect_boxes(sampled.frames[subset], cfg.detector, cfg.upsample, cfg.detect_max_side)
    found = sum(b is not None for b in boxes) / len(boxes)
    box = median_box(boxes)
    if box is None:
        if cfg.on_no_face == "fail":
            raise NoFace(f"no face found by dlib {cfg.detector} in {len(boxes)} examined frames "
                         f"(decode.detector {cfg.detector!r}, decode.upsample {cfg.upsample}); "
                         "raise decode.upsample or set decode.detector: mmod to find smaller "
                         "faces, or set decode.on_no_face: center to keep the clip with a "
                         "centre crop")
        return center_box(sampled.width, sampled.height), 0.0
    return square_box(box, cfg.margin, sampled.width, sampled.height), float(found)


def decode_clip(path: str | os.PathLike[str], source_kind: SourceKind,
                cfg: DecodeConfig | Mapping[str, Any] | None = None) -> DecodedClip:
    """Decode, face-crop and resize the ``cfg.num_frames`` sampled frames of one clip.

    Raises a ``dfer.video.errors.DecodeError`` subclass naming the file and the cause.
    """
    cfg = _config(cfg)
    start = time.perf_counter()
    return _crop_sampled(read_sampled(path, source_kind, cfg), cfg, str(path), start)


def decode_array(frames: np.ndarray, cfg: DecodeConfig | Mapping[str, Any] | None = None,
                 fps: float | None = None) -> DecodedClip:
    """``decode_clip`` for frames already in memory (uint8 RGB ``[N, H, W, 3]``, or grey
    ``[N, H, W]``), e.g. from a camera: the same sampling, face box and crop, no files.
    """
    cfg = _config(cfg)
    start = time.perf_counter()
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or len(arr) == 0:
        raise ValueError(f"expected uint8 frames [N, H, W, 3] with N >= 1, got {arr.dtype} "
                         f"{list(arr.shape)}")
    indices = sample_indices(len(arr), cfg.num_frames)
    rate = float(fps) if fps else math.nan
    sampled = SampledFrames(np.ascontiguousarray(arr[indices]), indices, len(arr), rate,
                            len(arr) / rate if fps else math.nan, arr.shape[2], arr.shape[1])
    return _crop_sampled(sampled, cfg, "frames in memory", start)


def _config(cfg: DecodeConfig | Mapping[str, Any] | None) -> DecodeConfig:
    return cfg if isinstance(cfg, DecodeConfig) else DecodeConfig.from_params(cfg)


def _crop_sampled(sampled: SampledFrames, cfg: DecodeConfig, where: str,
                  start: float) -> DecodedClip:
    try:
        box, found = face_crop_box(sampled, cfg)
    except NoFace as exc:
        raise NoFace(f"{where}: {exc}") from None
    crops = crop_resize(sampled.frames, box, cfg.size)
    return DecodedClip(
        frames=crops,
        frame_indices=sampled.frame_indices,
        num_source_frames=sampled.num_source_frames,
        fps=sampled.fps,
        duration_s=sampled.duration_s,
        orig_width=sampled.width,
        orig_height=sampled.height,
        crop_box=box,
        face_found_frac=found,
        seconds=time.perf_counter() - start,
    )


__all__ = ["DecodeConfig", "DecodedClip", "decode_array", "decode_clip", "face_crop_box",
           "read_sampled"]
