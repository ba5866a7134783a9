"""The 68-point (iBUG 300-W) landmark layout, shared by the landmark, parsing and render code.

Index ranges follow the 300-W annotation that both dlib's shape predictor and FAN emit.
"Right"/"left" are the *subject's* sides (300-W convention): for a frontal face the subject's
right eye (points 36-41) appears on the image's left.
"""

from __future__ import annotations

import numpy as np

NUM_POINTS = 68

#: part name -> point indices, in drawing order.
PARTS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)),
    "r_brow": tuple(range(17, 22)),
    "l_brow": tuple(range(22, 27)),
    "nose_bridge": tuple(range(27, 31)),
    "nose_base": tuple(range(31, 36)),
    "r_eye": tuple(range(36, 42)),
    "l_eye": tuple(range(42, 48)),
    "outer_lips": tuple(range(48, 60)),
    "inner_lips": tuple(range(60, 68)),
}

#: parts whose outline is a closed loop (the others are open polylines).
CLOSED_PARTS = frozenset({"r_eye", "l_eye", "outer_lips", "inner_lips"})


def five_points(points: np.ndarray) -> np.ndarray:
    """Reduce 68 points [..., 68, 2] to the 5-point layout face aligners use.

    Order (image left to right, top to bottom): eye on the image's left, eye on the image's
    right, nose tip, mouth corner on the image's left, mouth corner on the image's right,
    which is the order of RetinaFace's points and facer's alignment template.
    """
    pts = np.asarray(points, dtype=np.float32)
    return np.stack(
        [
            pts[..., 36:42, :].mean(axis=-2),
            pts[..., 42:48, :].mean(axis=-2),
            pts[..., 30, :],
            pts[..., 48, :],
            pts[..., 54, :],
        ],
        axis=-2,
    )
