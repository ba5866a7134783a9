"""Per-clip, in-memory decode: sampled frames -> face box(es) -> square face crops.

``decode_clip`` is what the shard runner calls for every manifest row and what ``dfer
predict`` calls on a user's video; it touches no artifact files.

Detection escalates only where needed: the configured detector runs first, and only when it
finds no face in any examined frame are the ``escalate`` rungs tried in order (upsampling
finds small faces, the CNN finds turned ones), so clips whose faces the first pass finds cost
exactly what they did before. ``crop: median`` cuts every frame at one box per clip;
``crop: track`` follows one person with a box per frame (:mod:`dfer.video.track`).

In ``median`` mode detection starts cheap and gets thorough only where needed:

1. **Quick pass** (``quick_frames`` > 0): the configured detector on ``quick_frames`` spread
   frames shrunk by ``detect_scale`` (default: one frame at 3/4 size). Its box (the median
   of what it found) is kept only when the face **stays put** (``stays_put``): on at least
   half of the ``detect_frames`` frames the full pass would examine, the box's grey patch
   correlates with the detected frame's (normalised cross-correlation >= ``QUICK_MATCH``),
   which is when the full pass's median box would lie near it too.
2. **Full pass**: the ``detect_frames`` frames, shrunk by ``detect_scale``; when that finds
   no face (faces under ~90 px at 3/4 size), the same frames again at full detection size
   (``detect_max_side``), as before ``detect_scale`` existed.
3. **Escalation**: the ``escalate`` rungs, at full detection size.

Each step runs only when the one before found nothing (or, for the quick pass, a face that
moves or a one-frame fluke), so a face the full-size pass would find is never lost.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from dfer.core.face_detect import DetectorKind, rung_name
from dfer.core.frame_sampling import sample_indices
from dfer.video.config import DecodeConfig
from dfer.video.crop import (
    center_box,
    crop_resize,
    crop_resize_each,
    detect_all,
    detect_boxes,
    median_box,
    square_box,
)
from dfer.video.errors import DecodeError, NoFace
from dfer.video.reader import (
    SampledFrames,
    check_frame_size,
    fit_to,
    kept_size,
    read_frame_folder,
    read_video,
)
from dfer.video.track import track_boxes

SourceKind = Literal["video", "frames"]

#: An escalation rung with the CNN detector examines at most this many frames (spread over
#: the frames the first pass examined): it costs 1.5 s (no upsampling) to 6 s (upsampled once)
#: per 640x360 frame on one CPU core, and one face found is enough to place the crop.
CNN_ESCALATION_FRAMES = 4

#: The quick pass's box stands when the face patch it covers correlates at least this well
#: (normalised cross-correlation of ``MATCH_SIDE`` px grey patches) with the detected frame's
#: on at least half of the checked frames. Measured on the benchmark clips: a face that stays
#: scores 0.6-1.0 (expressions included), one that moved away -0.4-0.3.
QUICK_MATCH = 0.5
MATCH_SIDE = 24


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
    detector_used: str | None = None  # "hog-up1": the rung that found the face; None: none did
    face_frames: int = 0  # examined frames with a face (of the chosen person, in track mode)
    crop_boxes: np.ndarray | None = None  # float32 [T, 4] per-frame boxes (crop: track only)
    bad_frames: tuple[str, ...] = ()  # unreadable images of a frame folder, skipped
    resized_frames: int = 0  # sampled frames resized to the first one's size

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
            "detector_used": self.detector_used,
            "face_frames": int(self.face_frames),
            "crop_boxes": None if self.crop_boxes is None else self.crop_boxes.astype(np.float32),
            "bad_frames": len(self.bad_frames),
            "resized_frames": int(self.resized_frames),
            "seconds": float(self.seconds),
        }


def _detection_subset(num: int, wanted: int) -> np.ndarray:
    """Which of the T sampled frames the detector examines (0 or >= T: all): the segment
    centres of :func:`dfer.core.frame_sampling.sample_indices`, distinct since wanted < T."""
    if wanted <= 0 or wanted >= num:
        return np.arange(num)
    return sample_indices(num, wanted)


def read_sampled(path: str | os.PathLike[str], source_kind: SourceKind,
                 cfg: DecodeConfig, threads: int = 0) -> SampledFrames:
    """The uniformly sampled full frames of a video file or frame folder (``threads``: video
    decoder threads, 0: one per core; see ``dfer.video.reader.use_decoder_threads``)."""
    if source_kind == "video":
        return read_video(path, cfg.num_frames, threads=threads, max_pixels=cfg.max_frame_pixels)
    if source_kind == "frames":
        return read_frame_folder(path, cfg.num_frames, fps=cfg.folder_fps,
                                 max_bad=cfg.max_bad_frames, max_pixels=cfg.max_frame_pixels)
    raise DecodeError(f"{path}: unknown source_kind {source_kind!r} (expected 'video' or 'frames')")


@dataclass
class FaceBoxes:
    """Where the crops of one clip come from (see ``face_boxes``)."""

    crop_box: np.ndarray  # float32 [4]: the clip's box (track: the box of the median face)
    crop_boxes: np.ndarray | None  # float32 [T, 4] per-frame crop boxes (track mode only)
    found_frac: float  # examined frames with a face / examined frames (of the rung that found it)
    face_frames: int
    detector_used: str | None


def _views(sampled: SampledFrames, which: np.ndarray) -> list[np.ndarray]:
    """The frames ``which`` of a clip as views: the detector reads them one at a time, and a
    fancy-indexed copy of 8 large frames would cost as much as the clip itself."""
    return [sampled.frames[int(i)] for i in which]


def _rung_frames(examined: np.ndarray, rung_index: int, kind: DetectorKind) -> np.ndarray:
    """The frames a rung examines: the first pass's, at most ``CNN_ESCALATION_FRAMES`` for an
    escalation to the CNN detector."""
    if rung_index == 0 or kind != "mmod":
        return examined
    return examined[_detection_subset(len(examined), CNN_ESCALATION_FRAMES)]


def _no_face(sampled: SampledFrames, cfg: DecodeConfig, examined: int) -> FaceBoxes:
    tried = ", ".join(rung_name(k, u) for k, u in cfg.ladder())
    if cfg.on_no_face == "fail":
        raise NoFace(f"no face found by dlib ({tried}) in {min(examined, sampled.num_source_frames)} "
                     f"examined frame(s) of the clip's {sampled.num_source_frames} "
                     f"(decode.detector {cfg.detector!r}, decode.upsample {cfg.upsample}, "
                     f"decode.escalate {list(cfg.escalate)}); add 'hog-up2' or 'mmod-up1' to "
                     "decode.escalate to find smaller faces, or set decode.on_no_face: center "
                     "to keep the clip with a centre crop")
    box = center_box(*sampled.frame_size)
    boxes = np.repeat(box[None], len(sampled.frames), axis=0) if cfg.crop == "track" else None
    return FaceBoxes(box, boxes, 0.0, 0, None)


def _patch(frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The grey ``MATCH_SIDE``-px patch of ``box`` (cut to the frame), zero mean, unit norm;
    None when the box lies (almost) outside the frame or the patch is flat."""
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(round(float(box[0])))), max(0, int(round(float(box[1]))))
    x1, y1 = min(w, int(round(float(box[2])))), min(h, int(round(float(box[3]))))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    patch = cv2.resize(grey, (MATCH_SIDE, MATCH_SIDE), interpolation=cv2.INTER_AREA)
    patch = patch.astype(np.float32) - np.float32(patch.mean())
    norm = float(np.linalg.norm(patch))
    return patch / norm if norm > 1e-3 else None


def stays_put(frames: np.ndarray, box: np.ndarray, ref: int, check: np.ndarray) -> bool:
    """Whether the face in ``box`` on frame ``ref`` is still there on at least half of the
    ``check`` frames (patch correlation >= ``QUICK_MATCH``; see the module doc)."""
    reference = _patch(frames[ref], box)
    if reference is None:
        return False
    matched = 0
    for i in check:
        patch = reference if int(i) == ref else _patch(frames[int(i)], box)
        matched += patch is not None and float((patch * reference).sum()) >= QUICK_MATCH
    return 2 * matched >= len(check)


def _median_faces(sampled: SampledFrames, cfg: DecodeConfig, box: np.ndarray,
                  boxes: list[np.ndarray | None], kind: DetectorKind, up: int) -> FaceBoxes:
    """``median`` mode's outcome: the square crop around ``box`` (the median of ``boxes``,
    the largest face per examined frame) and how many examined frames had a face."""
    found = sum(b is not None for b in boxes)
    return FaceBoxes(square_box(box, cfg.margin, *sampled.frame_size), None,
                     float(found / len(boxes)), found, rung_name(kind, up))


def _passes(cfg: DecodeConfig) -> list[tuple[DetectorKind, int, float]]:
    """(detector, upsampling, frame scale) of each pass after the quick one: the ladder, its
    first rung tried shrunk by ``detect_scale`` first in ``median`` mode (module doc)."""
    rungs = [(kind, up, 1.0) for kind, up in cfg.ladder()]
    if cfg.crop == "median" and cfg.detect_scale < 1:
        kind, up, _ = rungs[0]
        rungs.insert(0, (kind, up, cfg.detect_scale))
    return rungs


def _quick_pass(sampled: SampledFrames, cfg: DecodeConfig) -> FaceBoxes | None:
    """The quick pass (module doc): a FaceBoxes when it settles the clip, else None."""
    num = len(sampled.frames)
    quick = _detection_subset(num, cfg.quick_frames)
    boxes = detect_boxes(_views(sampled, quick), cfg.detector, cfg.upsample,
                         cfg.detect_max_side, scale=cfg.detect_scale, gray=cfg.detect_gray)
    box = median_box(boxes)
    if box is None:
        return None
    ref = next(int(f) for f, b in zip(quick, boxes, strict=True) if b is not None)
    if not stays_put(sampled.frames, box, ref, _detection_subset(num, cfg.detect_frames)):
        return None
    return _median_faces(sampled, cfg, box, boxes, cfg.detector, cfg.upsample)


def face_boxes(sampled: SampledFrames, cfg: DecodeConfig) -> FaceBoxes:
    """The crop box(es) of a clip, found by the detector ladder (``cfg.ladder()``).

    ``median``: the quick pass, else the largest face on the ``detect_frames`` examined
    frames (shrunk by ``detect_scale`` first, module doc), one median box.
    ``track``: every face on every sampled frame, one person followed (``dfer.video.track``).
    """
    num = len(sampled.frames)
    if cfg.crop == "median" and cfg.quick_frames > 0:
        quick = _quick_pass(sampled, cfg)
        if quick is not None:
            return quick
    examined = (np.arange(num) if cfg.crop == "track"
                else _detection_subset(num, cfg.detect_frames))
    for i, (kind, up, scale) in enumerate(_passes(cfg)):
        first = (kind, up) == (cfg.detector, cfg.upsample)  # the configured detector's passes
        frames = _rung_frames(examined, 0 if first else i, kind)
        if cfg.crop == "median":
            boxes = detect_boxes(_views(sampled, frames), kind, up, cfg.detect_max_side,
                                 scale=scale, gray=cfg.detect_gray)
            box = median_box(boxes)
            if box is None:
                continue
            return _median_faces(sampled, cfg, box, boxes, kind, up)
        faces = detect_all(_views(sampled, frames), kind, up, cfg.detect_max_side,
                           gray=cfg.detect_gray)
        if not any(faces):
            continue
        per_frame, found = track_boxes(faces, [int(f) for f in frames], num, cfg.track_smooth)
        assert per_frame is not None  # some frame had a face
        crops = np.stack([square_box(b, cfg.margin, *sampled.frame_size) for b in per_frame])
        clip_box = square_box(np.median(per_frame, axis=0), cfg.margin, *sampled.frame_size)
        return FaceBoxes(clip_box, crops, float(found / len(frames)), found, rung_name(kind, up))
    return _no_face(sampled, cfg, len(examined))


def decode_clip(path: str | os.PathLike[str], source_kind: SourceKind,
                cfg: DecodeConfig | Mapping[str, Any] | None = None,
                threads: int = 0) -> DecodedClip:
    """Decode, face-crop and resize the ``cfg.num_frames`` sampled frames of one clip.

    ``threads``: video decoder threads (0: one per core); the same frames either way.
    Raises a ``dfer.video.errors.DecodeError`` subclass naming the file and the cause.
    """
    cfg = _config(cfg)
    start = time.perf_counter()
    return _crop_sampled(read_sampled(path, source_kind, cfg, threads), cfg, str(path), start)


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
    check_frame_size("frames in memory", arr.shape[2], arr.shape[1])
    indices = sample_indices(len(arr), cfg.num_frames)
    rate = float(fps) if fps else math.nan
    size = kept_size(arr.shape[2], arr.shape[1], cfg.max_frame_pixels)
    kept = np.stack([fit_to(arr[int(i)], *size) for i in indices])  # as decode_clip keeps them
    sampled = SampledFrames(kept, indices, len(arr), rate,
                            len(arr) / rate if fps else math.nan, arr.shape[2], arr.shape[1])
    return _crop_sampled(sampled, cfg, "frames in memory", start)


def _config(cfg: DecodeConfig | Mapping[str, Any] | None) -> DecodeConfig:
    return cfg if isinstance(cfg, DecodeConfig) else DecodeConfig.from_params(cfg)


def _crop_sampled(sampled: SampledFrames, cfg: DecodeConfig, where: str,
                  start: float) -> DecodedClip:
    try:
        found = face_boxes(sampled, cfg)
    except NoFace as exc:
        raise NoFace(f"{where}: {exc}") from None
    if found.crop_boxes is None:
        crops = crop_resize(sampled.frames, found.crop_box, cfg.size)
    else:
        crops = crop_resize_each(sampled.frames, found.crop_boxes, cfg.size)
    # boxes are in the kept frames' pixels; the index records them in source pixels
    fw, fh = sampled.frame_size
    to_source = np.array([sampled.width / fw, sampled.height / fh] * 2, dtype=np.float32)
    shrunk = (fw, fh) != (sampled.width, sampled.height)
    return DecodedClip(
        frames=crops,
        frame_indices=sampled.frame_indices,
        num_source_frames=sampled.num_source_frames,
        fps=sampled.fps,
        duration_s=sampled.duration_s,
        orig_width=sampled.width,
        orig_height=sampled.height,
        crop_box=found.crop_box * to_source if shrunk else found.crop_box,
        face_found_frac=found.found_frac,
        seconds=time.perf_counter() - start,
        detector_used=found.detector_used,
        face_frames=found.face_frames,
        crop_boxes=(found.crop_boxes * to_source if shrunk and found.crop_boxes is not None
                    else found.crop_boxes),
        bad_frames=sampled.bad_frames,
        resized_frames=sampled.resized_frames,
    )


__all__ = ["CNN_ESCALATION_FRAMES", "MATCH_SIDE", "QUICK_MATCH", "DecodeConfig", "DecodedClip",
           "FaceBoxes", "decode_array", "decode_clip", "face_boxes", "read_sampled",
           "stays_put"]
