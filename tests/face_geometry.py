"""Synthetic face geometry shared by the parsing and render tests (known regions, no model)."""

from __future__ import annotations

import numpy as np

SIZE = 224


def square_face() -> np.ndarray:
    """68 points of a synthetic, left-right symmetric 'square' face in a 224 px frame.

    Jaw: the left, bottom and right sides of the rectangle x 40..184, y 80..190; brows: flat
    lines at y 70; eyes: hexagons 32 x 12 centred at (78, 95) (subject's right, image left)
    and (146, 95); nose: bridge x 112, y 90..120, base y 130, x 100..124; mouth: outer
    hexagon-ish ring x 80..144, y 150..170 and inner ring x 86..138, y 156..164.
    """
    jaw = [(40, y) for y in (80, 102, 124, 146, 168, 190)]
    jaw += [(x, 190) for x in (64, 88, 112, 136, 160)]
    jaw += [(184, y) for y in (190, 168, 146, 124, 102, 80)]
    r_brow = [(x, 70) for x in (56, 67, 78, 89, 100)]
    l_brow = [(x, 70) for x in (124, 135, 146, 157, 168)]
    bridge = [(112, y) for y in (90, 100, 110, 120)]
    base = [(x, 130) for x in (100, 106, 112, 118, 124)]

    def eye(cx: float) -> list[tuple[float, float]]:
        return [(cx - 16, 95), (cx - 5, 89), (cx + 5, 89), (cx + 16, 95), (cx + 5, 101), (cx - 5, 101)]

    outer = [(80, 160), (90, 150), (101, 150), (112, 150), (123, 150), (134, 150), (144, 160),
             (134, 170), (123, 170), (112, 170), (101, 170), (90, 170)]
    inner = [(86, 160), (98, 156), (112, 156), (126, 156), (138, 160), (126, 164), (112, 164),
             (98, 164)]
    pts = jaw + r_brow + l_brow + bridge + base + eye(78) + eye(146) + outer + inner
    assert len(pts) == 68
    return np.asarray(pts, dtype=np.float32)


#: Frame side of the face videos of the decode tests. ``support.videos.face_frames`` at this
#: size puts a ~80 px face in every frame, which dlib's HOG detector (no upsampling) scores
#: about 1.0-1.5 after H.264 / JPEG coding, far above its threshold of 0: at 160 px the same
#: face scores -0.3..0.5, so codec noise (and CPU-specific float rounding) decided detection.
FACE_SIDE = 224

#: Where the astronaut's face is in ``skimage.data.astronaut()`` (dlib HOG box, 512 px photo)
#: and the photo region ``face_frames`` scales to a ``size`` px frame (x0, y0, x1, y1).
_PHOTO_FACE = (175.0, 76.0, 265.0, 166.0)
_FACE_ROI = (80.0, 20.0, 340.0, 280.0)


def face_frames_centre(size: int = FACE_SIDE) -> tuple[float, float]:
    """The face centre (x, y) in a ``face_frames(..., size)`` frame, before its drift of at
    most 4 px horizontally and 3 px vertically."""
    fx0, fy0, fx1, fy1 = _PHOTO_FACE
    rx0, ry0, rx1, ry1 = _FACE_ROI
    return ((fx0 + fx1) / 2 - rx0) * size / (rx1 - rx0), ((fy0 + fy1) / 2 - ry0) * size / (ry1 - ry0)
