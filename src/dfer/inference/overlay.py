"""``dfer predict --overlay DIR``: one PNG strip per clip showing what the model was given.

The strip holds up to :data:`MAX_TILES` of the clip's face crops (the decode crops the model
saw, distinct source frames, evenly spread), each :data:`TILE` pixels square with its 68
landmark points as dots when the model uses landmarks, and below them a band of text: the
clip's name and frame count, and the top classes with their probabilities. Its width is
``TILE * max(tiles, MIN_TILES)`` (room for the text on a one-frame clip), its height ``TILE +
BAND``. Files are written atomically and named after the clip (:func:`overlay_names`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfer.core.artifacts import atomic_path
from dfer.inference.predict import Prediction

TILE = 112
MAX_TILES = 8
MIN_TILES = 4
BAND = 44
TOP = 3

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def overlay_names(paths: Sequence[str]) -> dict[str, str]:
    """A PNG file name per clip path: the clip's file or folder name, made safe; when two clips
    of one invocation share a name, both get 8 hex digits of their full path's hash."""
    bases = {p: _UNSAFE.sub("_", Path(p).name or "clip").strip("_") or "clip" for p in paths}
    counts = Counter(bases[p] for p in paths)  # a path named twice counts twice, as before
    out = {}
    for p, b in bases.items():
        if counts[b] > 1:
            digest = hashlib.sha1(os.path.abspath(p).encode()).hexdigest()[:8]
            b = f"{b}-{digest}"
        out[p] = f"{b}.png"
    return out


def pick_tiles(frame_indices: np.ndarray, max_tiles: int = MAX_TILES) -> list[int]:
    """Positions among the sampled crops to show: one per distinct source frame, at most
    ``max_tiles`` of them, evenly spread."""
    idx = np.asarray(frame_indices)
    firsts = [int(i) for i in np.unique(idx, return_index=True)[1]]
    firsts.sort()
    if len(firsts) <= max_tiles:
        return firsts
    chosen = np.linspace(0, len(firsts) - 1, max_tiles).round().astype(int)
    return [firsts[i] for i in chosen]


def render_strip(pred: Prediction, top: int = TOP) -> np.ndarray:
    """The strip of one predicted clip, RGB uint8 ``[TILE + BAND, TILE * max(n, MIN_TILES), 3]``."""
    import cv2

    if pred.crops is None:
        raise ValueError(f"{pred.path}: no crops kept (predict with keep_crops=True)")
    crops = pred.crops
    indices = pred.frame_indices if pred.frame_indices is not None else np.arange(len(crops))
    tiles = pick_tiles(indices)
    width = TILE * max(len(tiles), MIN_TILES)
    out = np.full((TILE + BAND, width, 3), 255, dtype=np.uint8)
    for slot, t in enumerate(tiles):
        crop = np.ascontiguousarray(crops[t])
        scale = TILE / crop.shape[1]
        tile = cv2.resize(crop, (TILE, TILE), interpolation=cv2.INTER_AREA)
        if pred.points is not None:
            for x, y in pred.points[t]:
                if np.isfinite(x) and np.isfinite(y):
                    cv2.circle(tile, (int(round(x * scale)), int(round(y * scale))), 1,
                               (0, 255, 0), -1, lineType=cv2.LINE_AA)
        cv2.putText(tile, str(int(indices[t])), (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (255, 255, 0), 1, cv2.LINE_AA)
        out[:TILE, slot * TILE:(slot + 1) * TILE] = tile
    frames = pred.num_frames if pred.num_frames is not None else len(np.unique(indices))
    title = f"{Path(pred.path).name}  ({frames} frame{'s' if frames != 1 else ''})"
    classes = "  ".join(f"{lab} {p:.2f}" for lab, p in pred.top(top))
    font = cv2.FONT_HERSHEY_SIMPLEX
    for row, (text, colour) in enumerate(((title, (90, 90, 90)), (classes, (0, 0, 0)))):
        size = 0.42
        while size > 0.25 and cv2.getTextSize(text, font, size, 1)[0][0] > width - 8:
            size -= 0.02
        cv2.putText(out, text, (4, TILE + 16 + 20 * row), font, size, colour, 1, cv2.LINE_AA)
    return out


def write_strip(pred: Prediction, path: str | os.PathLike[str], top: int = TOP) -> Path:
    """Render and write one strip as PNG, atomically."""
    import cv2

    image = render_strip(pred, top)
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode the overlay of {pred.path} as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return Path(path)
