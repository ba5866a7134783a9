"""The flip tables and drawing rules of ``dfer.train.render`` against hand-written values
(issue 25: the module's mutation run found them unchecked).

The two mirror tables are built by functions that run once at import; they are called again
here and compared with the iBUG 300-W correspondences and the canonical label names written
out by hand. The drawing rules checked: open and closed outlines, anti-aliased lines and dots,
1/16 px coordinates, the line width per image size, and that a point's dtype does not change
the picture.
"""

from __future__ import annotations

import numpy as np
import pytest
from face_geometry import square_face

from dfer.parsing.labels import LABELS
from dfer.train import render
from dfer.train.render import (
    overlay_on_face,
    render_landmarks,
    render_landmarks_clip,
    render_parsing,
)

#: iBUG 300-W 68 points: each left/right pair once (the mid-line points map to themselves)
MIRROR_PAIRS = (
    [(i, 16 - i) for i in range(8)]  # jaw; 8 is the chin
    + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]  # brows
    + [(31, 35), (32, 34)]  # nose base; 27-30 (bridge) and 33 stay
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]  # outer lips; 51, 57 stay
    + [(60, 64), (61, 63), (67, 65)]  # inner lips; 62, 66 stay
)


def test_mirror_68_is_the_ibug_correspondence() -> None:
    want = list(range(68))
    for a, b in MIRROR_PAIRS:
        want[a], want[b] = b, a
    table = render._mirror_68()
    assert table.dtype == np.int64 and table.tolist() == want
    assert render.MIRROR_68.tolist() == want
    # a face symmetric about x = 112 is its own mirror image where x -> 224 - x (225 px wide)
    face = square_face()
    np.testing.assert_array_equal(render.mirror_points(face, 225), face)


def test_parsing_mirror_swaps_left_and_right_labels_by_name() -> None:
    assert LABELS[2:6] == ("l_brow", "r_brow", "l_eye", "r_eye") and LABELS[11:13] == ("l_ear", "r_ear")
    want = list(range(len(LABELS)))
    for a, b in [(2, 3), (4, 5), (11, 12)]:
        want[a], want[b] = b, a
    lut = render._parsing_mirror_lut()
    assert lut.dtype == np.uint8 and lut.tolist() == want
    assert render.PARSING_MIRROR.tolist() == want
    maps = np.array([[[2, 0, 5], [11, 13, 1]]], np.uint8)
    np.testing.assert_array_equal(render.mirror_parsing(maps), [[[4, 0, 3], [1, 13, 12]]])


def test_mirror_points_of_integer_points_are_float32() -> None:
    pts = np.zeros((68, 2), np.int64)
    pts[36] = (10, 20)  # subject's right eye corner -> the left eye's (45), x -> 99 - 10
    out = render.mirror_points(pts, 100)
    assert out.dtype == np.float32
    assert out[45].tolist() == [89.0, 20.0] and out[36].tolist() == [99.0, 0.0]
    with pytest.raises(ValueError, match=r"expected points \[\.\.\., 68, 2\], got \(5, 2\)"):
        render.mirror_points(np.zeros((5, 2)), 100)


def test_outlines_are_open_or_closed_by_part() -> None:
    img = render_landmarks(square_face(), 224)
    # the jaw (40, 80) ... (184, 80) is open: no line joins its ends across the forehead
    assert img[80, 50:175].max() == 0
    # the eye is closed: its last point (73, 101) joins its first (62, 95) through (67.5, 98)
    assert img[98, 67].max() > 100 and img[98, 67].argmax() == 1  # r_eye green


def test_lines_and_dots_are_anti_aliased() -> None:
    pts = square_face().astype(np.float64)
    pts[0:8] = (40, 80)  # the jaw's first 8 points in one place: one long diagonal to the chin
    img = render_landmarks(pts, 224)
    line = img[128:143, 70:83].max(-1)  # around (76, 135), half way to (112, 190): line only
    assert line.any() and ((line > 0) & (line < 230)).any()  # partial coverage: anti-aliased
    # around a dot on the vertical right jaw line (184, 124): the dot's rim, off the line
    rim = img[120:129, 186:188].max(-1)
    assert ((rim > 0) & (rim < 230)).any()


def test_points_are_drawn_at_a_sixteenth_of_a_pixel() -> None:
    pts = square_face().astype(np.float64)
    base = render_landmarks(pts, 224)
    assert render_landmarks(pts + 0.03, 224).tobytes() == base.tobytes()  # 0.48 / 16: rounds away
    assert render_landmarks(pts + 0.0625, 224).tobytes() != base.tobytes()  # 1 / 16 px: moves


def test_line_width_follows_the_image_size() -> None:
    """width = max(1, round(size / 224)): 1 at 224, round(1.5) = 2 at 336."""
    pts = square_face().astype(np.float64)
    assert render_landmarks(pts, 224).tobytes() == render_landmarks(pts, 224, thickness=1).tobytes()
    big = pts * 1.5
    assert render_landmarks(big, 336).tobytes() == render_landmarks(big, 336, thickness=2).tobytes()
    assert render_landmarks(big, 336).tobytes() != render_landmarks(big, 336, thickness=1).tobytes()


def test_points_render_the_same_in_any_float_dtype() -> None:
    """Scaled points are computed in float64: a float32 point times 224 / 160 lands on another
    1/16 px in float32 arithmetic (134.6995 * 1.4 * 16 = 3017.27 in float64)."""
    pts = (square_face().astype(np.float64) * 160 / 224).astype(np.float32)
    pts[16] = (np.float32(134.6995), np.float32(166.27232))
    pts[9] = (np.float32(188.68304) * 160 / 224, np.float32(75.890625))
    a = render_landmarks(pts, 224, src_size=160)
    b = render_landmarks(pts.astype(np.float64), 224, src_size=160)
    assert a.tobytes() == b.tobytes()


def test_clip_rendering_passes_the_source_size_on() -> None:
    pts = np.stack([square_face(), square_face() + 4])
    clip = render_landmarks_clip(pts, 112, src_size=224)
    for k in range(2):
        assert clip[k].tobytes() == render_landmarks(pts[k], 112, src_size=224).tobytes()
    assert clip[0].tobytes() != render_landmarks(pts[0], 112).tobytes()


def test_overlay_and_parsing_errors_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"must both be \[H, W, 3\]"):
        overlay_on_face(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"^label 25 is outside the canonical set \(0\.\.18\)$"):
        render_parsing(np.full((2, 2), 25, np.uint8))
