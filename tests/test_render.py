"""Rendering of landmarks and parsing maps into the model's input images."""

from __future__ import annotations

import numpy as np
import pytest
from face_geometry import square_face

from dfer.parsing.labels import LABEL_INDEX, LABELS
from dfer.parsing.polygon import parse_points
from dfer.train.render import (
    PALETTE,
    PART_COLOURS,
    overlay_on_face,
    render_landmarks,
    render_landmarks_clip,
    render_parsing,
    render_parsing_clip,
)


def _part_at(image: np.ndarray, x: int, y: int) -> str:
    """The part whose colour the (anti-aliased: dimmed) pixel at (x, y) is a shade of."""
    pixel = image[y, x].astype(float)
    assert pixel.max() > 100, f"pixel ({x}, {y}) is (nearly) black: {pixel}"
    direction = pixel / np.linalg.norm(pixel)
    return max(PART_COLOURS, key=lambda p: direction @ (np.array(PART_COLOURS[p]) / np.linalg.norm(PART_COLOURS[p])))


def test_landmark_image_draws_each_part_in_its_colour_where_the_points_are() -> None:
    pts = square_face()
    img = render_landmarks(pts, 224)
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    assert img[:60].max() == 0 and img[200:].max() == 0  # nothing above the brows / below jaw
    for part, (x, y) in {"r_eye": (62, 95), "l_eye": (162, 95), "jaw": (40, 130),
                         "nose_bridge": (112, 105), "r_brow": (78, 70)}.items():
        assert _part_at(img, x, y) == part
    assert img[95, 78].max() == 0  # inside the eye outline: not filled
    # the dots make the subject's right eye appear on the image's left
    green = np.all(img == PART_COLOURS["r_eye"], axis=-1)
    assert np.nonzero(green)[1].max() < 112


def test_landmark_image_is_deterministic_and_scales_points() -> None:
    pts = square_face()
    a, b = render_landmarks(pts, 224), render_landmarks(pts.copy(), 224)
    assert a.tobytes() == b.tobytes()
    small = render_landmarks(pts, 112, src_size=224)  # points halved
    assert small.shape == (112, 112, 3)
    assert _part_at(small, 39, 35) == "r_brow"  # (78, 70) / 2
    big = render_landmarks(pts * 2, 448)
    assert big[:120].max() == 0 and big[140, 156].any()
    assert np.count_nonzero(big.any(-1)) > 3 * np.count_nonzero(a.any(-1))  # thicker lines


def test_landmark_image_without_face_is_black_and_shapes_are_checked() -> None:
    pts = square_face()
    pts[3] = np.nan
    assert render_landmarks(pts, 64).max() == 0
    with pytest.raises(ValueError, match=r"expected 68 points"):
        render_landmarks(np.zeros((5, 2)), 64)
    clip = render_landmarks_clip(np.stack([square_face(), pts]), 224)
    assert clip.shape == (2, 224, 224, 3) and clip[0].any() and not clip[1].any()


def test_parsing_image_colours_labels_and_resizes_without_blending() -> None:
    label_map = parse_points(square_face(), 224)
    img = render_parsing(label_map)
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, PALETTE[label_map])
    np.testing.assert_array_equal(img[95, 78], PALETTE[LABEL_INDEX["r_eye"]])
    assert len({tuple(c) for c in PALETTE}) == len(LABELS)  # one distinct colour per label
    for size in (112, 160, 336):
        resized = render_parsing(label_map, size)
        assert resized.shape == (size, size, 3)
        colours = {tuple(c) for c in resized.reshape(-1, 3)}
        assert colours <= {tuple(c) for c in PALETTE[np.unique(label_map)]}  # no blended colours
    assert render_parsing(label_map, 224).tobytes() == img.tobytes()


def test_parsing_image_rejects_unknown_labels_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"label 19 is outside the canonical set"):
        render_parsing(np.full((4, 4), 19, np.uint8))
    with pytest.raises(ValueError, match=r"expected a label map \[H, W\]"):
        render_parsing(np.zeros((2, 4, 4), np.uint8))
    clip = render_parsing_clip(np.zeros((3, 8, 8), np.uint8), 16)
    assert clip.shape == (3, 16, 16, 3) and clip.max() == 0


def test_landmarks_on_the_face_keep_the_face_and_put_dots_over_it() -> None:
    """The paper's Landmark Encoder input: dots on the face frame, not on black."""
    pts = square_face()
    marks = render_landmarks(pts, 224)
    face = np.full((224, 224, 3), (90, 60, 40), np.uint8)
    face[:, 112:] = (30, 140, 200)  # two halves, to see the face survive where no mark is
    out = overlay_on_face(face, marks)
    assert out.shape == face.shape and out.dtype == np.uint8
    blank = ~marks.any(-1)
    np.testing.assert_array_equal(out[blank], face[blank])  # no mark: the face, untouched
    full = marks.max(-1) == 255
    np.testing.assert_array_equal(out[full], marks[full])  # opaque dot centres: the mark colour
    assert _part_at(out, 62, 95) == "r_eye" and _part_at(out, 78, 70) == "r_brow"
    edge = ~blank & ~full  # anti-aliased rims blend, never darker than both sources
    assert edge.any()
    assert (out[edge].astype(int).max(-1) >= np.minimum(face[edge].max(-1), marks[edge].max(-1))).all()
    assert overlay_on_face(face, marks).tobytes() == out.tobytes()
    no_face = pts.copy()
    no_face[0] = np.nan
    np.testing.assert_array_equal(overlay_on_face(face, render_landmarks(no_face, 224)), face)
    with pytest.raises(ValueError, match="must both be"):
        overlay_on_face(face[:100], marks)
