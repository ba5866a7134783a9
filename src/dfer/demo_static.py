"""A tiny static (still-image) demo dataset: stills of the demo face, one expression each.

The static datasets (RAF-DB, AffectNet, FERPlus) cannot be downloaded here, so, as for the
video demo (:mod:`dfer.demo`), the one real face photo that ships offline is animated into the
demo's five expressions, and each still is one frame of such an animation at its apex (the
expression fully formed, before any release), with the clip's random head pose, lighting,
background, noise and mirroring. A classifier then has to learn the face's expression, not
its motion: the static setting. Everything is drawn from ``(seed, class, index)`` on a stream
of its own, so the stills are byte-for-byte reproducible and independent of the video demo.

Layout: ``images/<label>_<k>.jpg`` and ``manifest.csv`` (``clip_id,path,label,fold``, paths
relative to the root, folds ``1..num_folds`` balanced per class), read as layout
``demo_static`` (the demo's class order).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dfer.core.artifacts import atomic_path, write_bytes_atomic
from dfer.demo import CLASSES, MANIFEST_COLUMNS, _draw_style, _render_clip

#: Frames of the short animation a still is cut from, and the one taken: by frame 6 of 10 the
#: expression has reached its apex (onset <= 20 % and ramp <= 30 % of the clip) and has not
#: started its release (after 75 %), whatever the drawn style.
_ANIMATION_FRAMES = 10
_APEX_FRAME = 6
#: Separates the stills' random streams from the video demo's ``[seed, class, index]``.
_STREAM = 7


def still_rng(seed: int, class_idx: int, index: int) -> np.random.Generator:
    """The random generator of one still (independent of the video demo's clips)."""
    return np.random.default_rng([seed, class_idx, index, _STREAM])


def render_still(label: str, rng: np.random.Generator, size: int = 256, fps: int = 15) -> np.ndarray:
    """One RGB uint8 ``[size, size, 3]`` still of the demo face showing ``label`` at its apex."""
    style = _draw_style(rng, (_ANIMATION_FRAMES, _ANIMATION_FRAMES), fps)
    for i, frame in enumerate(_render_clip(label, style, rng, size, fps)):
        if i == _APEX_FRAME:
            return frame
    raise AssertionError("the animation is shorter than its apex frame")  # pragma: no cover


def generate_static_demo(
    root: Path,
    seed: int = 0,
    images_per_class: int = 6,
    *,
    size: int = 256,
    num_folds: int = 2,
    quality: int = 92,
    progress: bool = True,
) -> Path:
    """Write the static demo under ``root``; return the path of ``root/manifest.csv``.

    ``images_per_class`` stills per class (fold ``1 + k % num_folds``, so every fold holds
    each class equally often when it divides evenly), JPEGs at ``quality``. The manifest is
    written last and atomically: its presence means the dataset is complete.
    """
    from tqdm import tqdm

    if images_per_class < 1:
        raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, int]] = []
    jobs = [(k, c) for k in range(images_per_class) for c in range(len(CLASSES))]
    for k, c in tqdm(jobs, desc="demo stills", unit="image", disable=not progress):
        label = CLASSES[c]
        clip_id = f"{label}_{k:03d}"
        image = render_still(label, still_rng(seed, c, k), size)
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
            raise RuntimeError(f"OpenCV could not encode the still {clip_id}")
        rel = f"images/{clip_id}.jpg"
        write_bytes_atomic(root / rel, buf.tobytes())
        rows.append((clip_id, rel, label, 1 + k % num_folds))
    lines = [",".join(MANIFEST_COLUMNS)] + [f"{a},{b},{c},{d}" for a, b, c, d in rows]
    manifest = root / "manifest.csv"
    with atomic_path(manifest) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest
