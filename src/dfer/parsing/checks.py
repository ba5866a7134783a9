"""Sanity checks of parsing maps against the landmarks they were made with.

Which eye or brow a parser calls "left" is a naming convention of its training set, and the
facer models cannot be run here to check theirs. The landmark points, however, fix the
subject's sides (300-W: points 36-41 are the subject's right eye), so every parsed shard
records how often the parser's eye regions agree with them: near 1.0 the label sides match,
near 0.0 the model's left/right names are swapped relative to ours.
"""

from __future__ import annotations

import numpy as np

from dfer.parsing.labels import LABEL_INDEX


def eye_side_votes(maps: np.ndarray, points: np.ndarray) -> tuple[int, int]:
    """(frames whose eye regions sit on the landmark eyes' sides, frames that could be checked).

    ``maps`` uint8 [T, H, W] canonical labels, ``points`` [T, 68, 2]. A frame is checked when
    it has finite points and both eye regions are non-empty; it agrees when pairing each eye
    region's centroid with the same-named landmark eye is closer than the crossed pairing.
    """
    agree = checked = 0
    for label_map, pts in zip(maps, np.asarray(points, dtype=np.float64), strict=True):
        if not np.isfinite(pts).all():
            continue
        centroids = []
        for name in ("r_eye", "l_eye"):
            ys, xs = np.nonzero(label_map == LABEL_INDEX[name])
            if not len(xs):
                break
            centroids.append(np.array([xs.mean(), ys.mean()]))
        if len(centroids) < 2:
            continue
        right, left = pts[36:42].mean(0), pts[42:48].mean(0)
        same = np.linalg.norm(centroids[0] - right) + np.linalg.norm(centroids[1] - left)
        crossed = np.linalg.norm(centroids[0] - left) + np.linalg.norm(centroids[1] - right)
        checked += 1
        agree += int(same < crossed)
    return agree, checked
