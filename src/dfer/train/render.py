"""Landmarks and parsing maps as RGB images, the inputs of FineCLIPER's middle-level encoders.

Rendered on the fly (in the trainer's dataloader), not stored: drawing both images of a frame
costs about a millisecond on one CPU core (benchmarks/results/face_stages.md), nothing next to
the image encoders, while the two RGB images would take 6 bytes per pixel on disk against the
label map's 1 byte and the landmarks' 544 bytes per frame; and changing a colour or line width
then needs no pipeline re-run. Both functions are pure and deterministic (same input, same
bytes). See docs/face_stages.md.

A horizontal flip (training augmentation) must keep anatomy: the mirrored subject's left eye
is still a left eye. :func:`mirror_points` and :func:`mirror_parsing` mirror the renderers'
*inputs* (the 68 points re-indexed by :data:`MIRROR_68`, the parsing labels ``l_*`` <->
``r_*`` by name) so that the rendered images of a flipped clip colour each part as its own.
Flipping the rendered images instead would draw the left eye in right-eye colours.
"""

from __future__ import annotations

import cv2
import numpy as np

from dfer.landmarks.points import CLOSED_PARTS, NUM_POINTS, PARTS
from dfer.parsing.labels import LABEL_INDEX, LABELS


def _mirror_68() -> np.ndarray:
    """The 68-point (iBUG 300-W) index of each point's mirror image: ``mirrored[i] =
    points[MIRROR_68[i]]`` after the x coordinates are flipped. Symmetric parts are reversed
    (jaw 0-16, the nose base 31-35), the brows, eyes and mouth corners swap sides point for
    point (the eyes' outer corner 36 <-> 45, upper lid 37 <-> 44 ...), the nose bridge and
    the mid-line points (33, 51, 57, 62, 66) stay."""
    perm = list(range(NUM_POINTS))

    def pair(a: list[int], b: list[int]) -> None:
        for i, j in zip(a, b, strict=True):
            perm[i], perm[j] = j, i

    pair(list(range(0, 8)), list(range(16, 8, -1)))  # jaw, 8 = chin
    pair(list(range(17, 22)), list(range(26, 21, -1)))  # brows
    pair([31, 32], [35, 34])  # nose base, 33 = tip of the base
    pair([36, 37, 38, 39, 40, 41], [45, 44, 43, 42, 47, 46])  # eyes
    pair([48, 49, 50, 59, 58], [54, 53, 52, 55, 56])  # outer lips; 51 top, 57 bottom
    pair([60, 61, 67], [64, 63, 65])  # inner lips; 62 top, 66 bottom
    return np.asarray(perm, dtype=np.int64)


#: :func:`_mirror_68`: each 68-point index's counterpart on the other side of the face.
MIRROR_68 = _mirror_68()


def _parsing_mirror_lut() -> np.ndarray:
    """uint8 lookup table: canonical parsing label -> its mirror (``l_eye`` <-> ``r_eye`` ...,
    by name: every ``l_X`` with an ``r_X``); the others map to themselves."""
    lut = np.arange(len(LABELS), dtype=np.uint8)
    for name, i in LABEL_INDEX.items():
        for a, b in (("l_", "r_"), ("r_", "l_")):
            if name.startswith(a) and b + name[2:] in LABEL_INDEX:
                lut[i] = LABEL_INDEX[b + name[2:]]
    return lut


#: :func:`_parsing_mirror_lut`
PARSING_MIRROR = _parsing_mirror_lut()


def mirror_points(points: np.ndarray, width: int) -> np.ndarray:
    """68-point landmarks ``[..., 68, 2]`` of an image ``width`` pixels wide, as they are in
    the horizontally flipped image: x -> ``width - 1 - x`` (pixel ``j`` of a flipped row is
    pixel ``width - 1 - j``), and each point re-indexed to the part it now is (the subject's
    left eye of the flipped face is the former right eye, mirrored). NaN stays NaN."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.shape[-2:] != (NUM_POINTS, 2):
        raise ValueError(f"expected points [..., {NUM_POINTS}, 2], got {pts.shape}")
    out = pts[..., MIRROR_68, :].copy()
    out[..., 0] = (width - 1) - out[..., 0]
    return out


def mirror_parsing(label_maps: np.ndarray) -> np.ndarray:
    """Canonical label maps ``[..., H, W]`` flipped horizontally with left and right labels
    swapped (:data:`PARSING_MIRROR`), as a parser would label the mirrored face."""
    maps = np.asarray(label_maps)
    return np.ascontiguousarray(PARSING_MIRROR[maps[..., ::-1]])

#: RGB colour per landmark part (lines and dots).
PART_COLOURS: dict[str, tuple[int, int, int]] = {
    "jaw": (230, 230, 230),
    "r_brow": (255, 128, 0),
    "l_brow": (255, 200, 0),
    "nose_bridge": (0, 200, 255),
    "nose_base": (0, 120, 255),
    "r_eye": (0, 255, 0),
    "l_eye": (0, 255, 160),
    "outer_lips": (255, 0, 80),
    "inner_lips": (255, 100, 200),
}

#: RGB colour per canonical parsing label (index = label id); background is black.
PALETTE = np.array(
    [
        (0, 0, 0), (204, 153, 102), (255, 200, 0), (255, 128, 0), (0, 255, 160), (0, 255, 0),
        (0, 120, 255), (255, 0, 80), (120, 0, 40), (255, 100, 200), (140, 70, 20),
        (180, 0, 255), (120, 0, 200), (160, 160, 160), (60, 60, 200), (0, 255, 255),
        (255, 255, 0), (255, 255, 255), (200, 200, 0),
    ],
    dtype=np.uint8,
)
assert len(PALETTE) == len(LABELS)


def render_landmarks(
    points: np.ndarray, size: int, src_size: float | None = None, thickness: int | None = None
) -> np.ndarray:
    """68 points [68, 2] (x, y) -> uint8 [size, size, 3]: part outlines and dots on black.

    :func:`overlay_on_face` puts the result on the face frame (the paper's input).

    ``src_size``: side of the image the points refer to (default ``size``); points are scaled
    by ``size / src_size``. Points with NaN give a black image (a frame without a face).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68 points [68, 2], got {points.shape}")
    image = np.zeros((size, size, 3), dtype=np.uint8)
    if not np.isfinite(points).all():
        return image
    scaled = points * (size / float(src_size or size))
    width = thickness or max(1, round(size / 224))
    shift = 4  # sub-pixel precision of cv2's drawing (coordinates in 1/16 px)
    fixed = np.round(scaled * (1 << shift)).astype(np.int32)
    for part, idx in PARTS.items():
        colour = PART_COLOURS[part]
        pts = fixed[list(idx)].reshape(-1, 1, 2)
        cv2.polylines(image, [pts], part in CLOSED_PARTS, colour, width, cv2.LINE_AA, shift)
        for x, y in fixed[list(idx)]:
            cv2.circle(image, (int(x), int(y)), (width + 1) << shift, colour, -1, cv2.LINE_AA, shift)
    return image


def overlay_on_face(face: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """Landmark marks drawn on black (:func:`render_landmarks`) laid over the face frame.

    The paper's Landmark Encoder sees the dots on the face; drawing on black is our ablation
    (``data.landmarks_on_face: false``). Anti-aliased marks on black are colour x coverage, i.e.
    premultiplied by an alpha of about ``max channel / 255`` (the part colours have a channel
    near 255), so ``marks + face * (1 - alpha)`` puts full dots over the face and blends their
    soft edges instead of leaving dark fringes. Pure and deterministic like the renderers.
    """
    face = np.asarray(face)
    marks = np.asarray(marks)
    if face.shape != marks.shape or face.ndim != 3 or face.shape[-1] != 3:
        raise ValueError(f"face {face.shape} and landmark image {marks.shape} must both be [H, W, 3]")
    alpha = marks.max(axis=-1, keepdims=True).astype(np.float32) / 255.0
    out = marks.astype(np.float32) + face.astype(np.float32) * (1.0 - alpha)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def render_parsing(label_map: np.ndarray, size: int | None = None) -> np.ndarray:
    """Canonical label map uint8 [H, W] -> RGB uint8 [size, size, 3] (fixed colour per label).

    Resizing uses nearest neighbour so that no blended, meaningless colours appear.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"expected a label map [H, W], got {label_map.shape}")
    if label_map.max(initial=0) >= len(PALETTE):
        raise ValueError(f"label {int(label_map.max())} is outside the canonical set (0..{len(PALETTE) - 1})")
    image = PALETTE[label_map]
    if size is not None and image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
    return image


def render_landmarks_clip(points: np.ndarray, size: int, src_size: float | None = None) -> np.ndarray:
    """[T, 68, 2] -> uint8 [T, size, size, 3]."""
    return np.stack([render_landmarks(p, size, src_size) for p in points])


def render_parsing_clip(label_maps: np.ndarray, size: int | None = None) -> np.ndarray:
    """[T, H, W] -> uint8 [T, size, size, 3]."""
    return np.stack([render_parsing(m, size) for m in label_maps])
