"""What a frame without a detected face gets: the documented fill rules.

``nearest``: copy the points of the nearest frame with a detected face (ties go to the earlier
frame) and record its index in ``filled_from``; a clip is a smooth sequence, so the nearest
detected frame is the best available guess and keeps every frame renderable.
``missing``: leave the frame's points NaN (``filled_from`` stays -1, ``has_face`` False).
"""

from __future__ import annotations

import numpy as np


def fill_sources(has_face: np.ndarray, rule: str) -> np.ndarray:
    """For each frame, the index it copies its points from (-1: its own / none), as int16."""
    has_face = np.asarray(has_face, dtype=bool)
    source = np.full(has_face.shape, -1, dtype=np.int16)
    if rule == "missing" or has_face.all() or not has_face.any():
        return source
    if rule != "nearest":
        raise ValueError(f"unknown fill rule {rule!r}; expected 'nearest' or 'missing'")
    detected = np.flatnonzero(has_face)
    for t in np.flatnonzero(~has_face):
        source[t] = detected[np.argmin(np.abs(detected - t))]  # argmin: first (earlier) on ties
    return source
