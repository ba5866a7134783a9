"""One face box per clip, and the square face crops it gives.

A per-clip box (not one per frame) keeps the crop still, so the only motion left in the
crops is the face's own, which is what dynamic expression recognition learns from. The box
is the per-coordinate median of the largest face detected in the examined frames (robust to
a missed or spurious detection), grown by ``margin`` of its size on each side, made square,
and moved (not padded) to lie inside the frame: padding would add black borders the model
could latch onto. When the square is larger than the frame it shrinks to the frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dfer.core.face_detect import DetectorKind, detect_faces

#: Detection images smaller than this on a side are not searched: no face fits, and dlib's CNN
#: detector raises on images under 10 px (and may crash the process afterwards).
MIN_DETECT_SIDE = 16


def detect_all(frames: np.ndarray | Sequence[np.ndarray], detector: DetectorKind = "hog",
               upsample: int = 0, max_side: int = 640, scale: float = 1.0,
               gray: bool = False) -> list[list[np.ndarray]]:
    """Every face box (x0, y0, x1, y1, source pixels) per frame, largest first.

    Frames whose longer side exceeds ``max_side`` are downscaled for detection (HOG cost grows
    with the pixel count; faces in expression datasets are large) and boxes scaled back;
    ``scale`` (<= 1) shrinks them further (``decode.detect_scale``).
    ``gray``: the HOG detector sees the frame's luma instead of its RGB (``decode.detect_gray``;
    the CNN detector always sees RGB).
    The tracker needs every face, not only the largest, to follow one person among several.
    """
    out: list[list[np.ndarray]] = []
    grey = gray and detector == "hog"
    for frame in frames:
        h, w = frame.shape[:2]
        factor = (min(1.0, max_side / max(h, w)) if max_side > 0 else 1.0) * scale
        img = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if grey else frame
        if factor != 1.0:
            img = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))),
                             interpolation=cv2.INTER_AREA)
        if min(img.shape[:2]) < MIN_DETECT_SIDE:  # a sliver of a frame: nothing to find
            out.append([])
            continue
        faces = detect_faces(np.ascontiguousarray(img), kind=detector, upsample=upsample)
        out.append([f.as_array() / np.float32(factor) for f in faces])
    return out


def detect_boxes(frames: np.ndarray | Sequence[np.ndarray], detector: DetectorKind = "hog", upsample: int = 0,
                 max_side: int = 640, scale: float = 1.0,
                 gray: bool = False) -> list[np.ndarray | None]:
    """Largest face box (x0, y0, x1, y1, source pixels) per frame, None where none is found."""
    return [faces[0] if faces else None
            for faces in detect_all(frames, detector, upsample, max_side, scale, gray)]


def median_box(boxes: list[np.ndarray | None]) -> np.ndarray | None:
    """Per-coordinate median of the found boxes, or None when no frame had a face."""
    found = [b for b in boxes if b is not None]
    if not found:
        return None
    return np.median(np.stack(found), axis=0).astype(np.float32)


def square_box(box: np.ndarray, margin: float, width: int, height: int) -> np.ndarray:
    """Square crop box around ``box`` grown by ``margin`` per side, moved inside the frame.

    Returned as float32 (x0, y0, x1, y1) with integer values (the pixels actually cropped).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    side = int(round(min(max(side, 1.0), width, height)))
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return np.array([left, top, left + side, top + side], dtype=np.float32)


def center_box(width: int, height: int) -> np.ndarray:
    """The largest centred square of a frame (the fallback when no face is found)."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return np.array([left, top, left + side, top + side], dtype=np.float32)


def crop_resize(frames: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Crop ``box`` (integer-valued, inside the frame) from every frame; uint8 [T, S, S, 3]."""
    x0, y0, x1, y1 = (int(v) for v in box)
    side = x1 - x0
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        # straight into the output (no per-frame array and copy); same pixels as assigning
        cv2.resize(frame[y0:y1, x0:x1], (size, size), dst=out[i], interpolation=interp)
    return out


def crop_resize_each(frames: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crop frame ``t`` at its own box ``boxes[t]`` (the ``crop: track`` mode); uint8 [T, S, S, 3]."""
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        out[i] = crop_resize(frame[None], box, size)[0]
    return out
