"""Face boxes for the landmark models: dlib detection per frame, or the decode crop itself."""

from __future__ import annotations

import numpy as np

from dfer.core.face_detect import FaceBox, largest_face


def crop_face_box(size: int, margin: float) -> FaceBox:
    """The face box a decode crop of side ``size`` implies.

    The decode stage crops a square of side ``face * (1 + 2 * margin)`` around the face, so
    the face occupies the centre with ``margin * face`` pixels on each side.
    """
    inset = size * margin / (1.0 + 2.0 * margin)
    return FaceBox(inset, inset, size - inset, size - inset, float("nan"))


def find_boxes(
    frames: np.ndarray, detector: str, upsample: int = 0, crop_margin: float = 0.25
) -> list[FaceBox | None]:
    """One face box (or None when no face was found) per frame of ``frames`` [T, H, W, 3]."""
    if detector == "crop":
        box = crop_face_box(int(frames.shape[2]), crop_margin)
        return [box for _ in range(len(frames))]
    return [largest_face(frame, kind=detector, upsample=upsample) for frame in frames]  # type: ignore[arg-type]
