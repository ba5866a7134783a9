"""Face geometry and frame selection pinned to values computed by hand (issue 25).

The decode tests run real videos through the detector, so their tolerances must absorb the
detector's jitter (18 px) and cannot see an off-by-a-few-pixels bug. These tests feed the
geometry known boxes instead: the crop box of ``dfer.video.crop`` for a known face box and
margin, the tracker (``dfer.video.track``) on known detections with the main person left,
right or in the centre and a bystander at either end of the clip, frame sampling against exact
rational arithmetic, skipping against a scripted decoder, and the display-matrix orientation
against hand-drawn arrays. No video is decoded except where the container itself matters.
"""

from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from dfer.core.face_detect import FaceBox
from dfer.core.frame_sampling import (
    jittered_indices,
    sample_indices,
    spread_indices,
    uniform_indices,
)
from dfer.video import crop
from dfer.video.crop import (
    center_box,
    crop_resize,
    crop_resize_each,
    detect_all,
    detect_boxes,
    median_box,
    square_box,
)
from dfer.video.reader import is_mirrored, upright
from dfer.video.skipping import decode_skipping, presentation_ranks
from dfer.video.track import (
    LINK_DISTANCE,
    MAX_GAP,
    MAX_SCALE,
    fill_and_smooth,
    link_tracks,
    main_track,
    track_boxes,
)


# ---------------------------------------------------------------------------------- crop box
@pytest.mark.parametrize(("box", "margin", "size", "expected"), [
    # 80 x 100 face, margin 0.25: side = 100 * 1.5 = 150, centred on (140, 100)
    ((100, 50, 180, 150), 0.25, (640, 360), (65, 25, 215, 175)),
    # margin 0: the longer side; a wide face: side = 120 from the width
    ((200, 100, 320, 160), 0.0, (640, 360), (200, 70, 320, 190)),
    # fractional: side 50.7 * 1.2 = 60.84 -> 61, left 35.55 - 30.5 = 5.05 -> 5, top 14.75 -> 15
    ((10.2, 20.4, 60.9, 70.1), 0.1, (640, 360), (5, 15, 66, 76)),
    # at the top-left corner: (35, 40) - 42 -> moved to 0, 0 (not padded)
    ((10, 10, 60, 70), 0.2, (640, 360), (0, 0, 84, 84)),
    # at the bottom-right corner: side 80 at (620, 340) -> moved to end at 640, 360
    ((600, 320, 640, 360), 0.5, (640, 360), (560, 280, 640, 360)),
    # larger than the frame: side 600 shrinks to the frame's 360, then moved inside
    ((0, 0, 400, 300), 0.25, (640, 360), (20, 0, 380, 360)),
    # portrait frame, face near the right edge: side 60, left 290 - 30 -> 240 (300 - 60)
    ((270, 400, 310, 440), 0.25, (300, 500), (240, 390, 300, 450)),
    # a portrait frame narrower than the grown face: side 450 shrinks to the width, 200
    ((100, 150, 400, 450), 0.25, (200, 500), (0, 200, 200, 400)),
    # a degenerate (zero-size) box is still one pixel
    ((50, 60, 50, 60), 0.4, (640, 360), (50, 60, 51, 61)),
])
def test_square_crop_box_side_position_and_clipping(box, margin, size, expected) -> None:
    """side = face size x (1 + 2 margin), centred on the face, moved inside the frame."""
    got = square_box(np.array(box, np.float32), margin, *size)
    assert got.dtype == np.float32
    assert got.tolist() == list(expected)


def test_center_box_median_box_and_crops_by_hand() -> None:
    assert center_box(640, 360).tolist() == [140, 0, 500, 360]
    assert center_box(101, 50).tolist() == [25, 0, 75, 50]  # (101 - 50) // 2
    assert center_box(30, 41).tolist() == [0, 5, 30, 35]
    assert center_box(30, 41).dtype == np.float32
    boxes = [np.array([10, 20, 50, 60], np.float32), None, np.array([14, 18, 60, 62], np.float32),
             np.array([11, 30, 52, 70], np.float32)]
    med = median_box(boxes)
    assert med.dtype == np.float32 and med.tolist() == [11, 20, 52, 62]
    assert median_box([None, None]) is None and median_box([]) is None
    two = median_box([np.array([0, 0, 10, 10], np.float32), np.array([2, 4, 12, 20], np.float32)])
    assert two.tolist() == [1, 2, 11, 15]  # the median of two is their mean

    # frames whose pixel (y, x) holds 10 y + x (channel c adds 50 c), two frames apart by 1
    yy, xx = np.mgrid[:12, :12]
    base = np.stack([10 * yy + xx + 50 * c for c in range(3)], axis=-1)
    frames = np.stack([base, base + 1]).astype(np.uint8)
    same = crop_resize(frames, np.array([2, 3, 6, 7], np.float32), 4)  # side 4 -> 4: the pixels
    assert same.shape == (2, 4, 4, 3) and same.dtype == np.uint8
    np.testing.assert_array_equal(same, frames[:, 3:7, 2:6])
    # side 8 -> 4 averages 2x2 blocks (INTER_AREA): block (2i, 2j) means 10 (2i + .5) + 2j + .5
    half = crop_resize(frames, np.array([0, 0, 8, 8], np.float32), 4)
    i, j = np.mgrid[:4, :4]
    expect = 10 * (2 * i + 0.5) + 2 * j + 0.5
    assert np.abs(half[0, :, :, 0].astype(float) - expect).max() <= 0.5
    assert np.abs(half[1, :, :, 2].astype(float) - (expect + 101)).max() <= 0.5
    # 3x downscale of one bright pixel per 3 x 3 block (90 at the block centre): INTER_AREA
    # averages the block (10); bilinear sampling would hit the centres (90)
    dots = np.zeros((1, 12, 12, 3), np.uint8)
    dots[0, 1::3, 1::3] = 90
    np.testing.assert_array_equal(crop_resize(dots, np.array([0, 0, 12, 12], np.float32), 4), 10)
    # upscaling (side 2 -> 6) interpolates linearly, as cv2's INTER_LINEAR does
    up = crop_resize(frames, np.array([4, 4, 6, 6], np.float32), 6)
    np.testing.assert_array_equal(up[1], cv2.resize(np.ascontiguousarray(frames[1, 4:6, 4:6]), (6, 6),
                                                    interpolation=cv2.INTER_LINEAR))
    assert len(np.unique(up[1, :, :, 0])) > 4  # not nearest-neighbour blocks
    each = crop_resize_each(frames, np.array([[0, 0, 4, 4], [5, 6, 9, 10]], np.float32), 4)
    assert each.dtype == np.uint8 and each.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(each[0], frames[0, 0:4, 0:4])
    np.testing.assert_array_equal(each[1], frames[1, 6:10, 5:9])
    with pytest.raises(ValueError):  # a box per frame, no more, no fewer
        crop_resize_each(frames, np.array([[0, 0, 4, 4]] * 3, np.float32), 4)


def test_detection_runs_on_downscaled_frames_and_boxes_come_back_in_source_pixels(monkeypatch) -> None:
    """A 1280x720 frame with ``max_side`` 640 is detected at half size (and with ``scale``
    0.5 at a quarter); the stand-in detector's box (10, 20, 30, 40) comes back x2 (x4)."""
    seen: list[tuple] = []

    def fake(image, kind="hog", upsample=1):
        seen.append((image.shape, kind, upsample, image.flags.c_contiguous))
        return [FaceBox(10, 20, 30, 40, 1.0), FaceBox(0, 0, 4, 4, 0.5)]

    monkeypatch.setattr(crop, "detect_faces", fake)
    frames = np.zeros((2, 720, 1280, 3), np.uint8)
    faces = detect_all(frames, "hog", upsample=1, max_side=640)
    assert seen == [((360, 640, 3), "hog", 1, True)] * 2
    assert [f.tolist() for f in faces[0]] == [[20, 40, 60, 80], [0, 0, 8, 8]]
    seen.clear()
    boxes = detect_boxes(frames[:1], "mmod", upsample=2, max_side=640, scale=0.5, gray=True)
    assert seen == [((180, 320, 3), "mmod", 2, True)]  # grey only for HOG
    assert boxes[0].tolist() == [40, 80, 120, 160]
    seen.clear()
    detect_all(frames[:1], "hog", max_side=640, scale=0.5, gray=True)
    assert seen == [((180, 320), "hog", 0, True)]
    seen.clear()
    small = np.zeros((1, 100, 200, 3), np.uint8)
    assert detect_all(small, max_side=640)[0][0].tolist() == [10, 20, 30, 40]  # not upscaled
    assert detect_all(small, max_side=0, scale=1.0)[0][0].tolist() == [10, 20, 30, 40]  # 0: no limit
    assert detect_all(small, max_side=100)[0][0].tolist() == [20, 40, 60, 80]  # 200 -> 100
    assert seen[0][0] == (100, 200, 3) and seen[2][0] == (50, 100, 3)
    # the defaults: HOG without upsampling on RGB frames at most 640 px, boxes back x2
    seen.clear()
    assert detect_boxes(frames[:1])[0].tolist() == [20, 40, 60, 80]
    assert detect_all(frames[:1])[0][0].tolist() == [20, 40, 60, 80]
    assert seen == [((360, 640, 3), "hog", 0, True)] * 2
    seen.clear()
    detect_boxes(frames[:1], "hog", gray=True)
    assert seen == [((360, 640), "hog", 0, True)]
    # max_side 40: 100 x 200 -> 20 x 40 (above the smallest side the detector is shown)
    seen.clear()
    detect_all(small, max_side=40)
    assert seen[0][0] == (20, 40, 3)
    # max_side 1: shrunk to a 1 x 1 sliver, which is not shown to the detector at all (dlib
    # raises under 10 px): no face, rather than a detection on the full-size frame
    seen.clear()
    assert detect_all(small, max_side=1) == [[]] and seen == []
    # the shrink averages (INTER_AREA): one 90 per 3 x 3 block comes out as 10 everywhere
    images: list[np.ndarray] = []
    monkeypatch.setattr(crop, "detect_faces", lambda image, kind="hog", upsample=1: images.append(image) or [])
    dots = np.zeros((1, 48, 48, 3), np.uint8)
    dots[0, 1::3, 1::3] = 90
    assert detect_boxes(dots, max_side=16) == [None]
    assert images[0].shape == (16, 16, 3) and (images[0] == 10).all()
    # a 20-pixel-high frame shrunk 100 x keeps its rows (rounded, at least 1): a 1 x 20 sliver,
    # not shown to the detector, while 2000 x 2000 -> 20 x 20 is
    seen.clear()
    monkeypatch.setattr(crop, "detect_faces", fake)
    assert detect_all(np.zeros((1, 20, 2000, 3), np.uint8), max_side=20) == [[]] and seen == []
    detect_all(np.zeros((1, 2000, 2000, 3), np.uint8), max_side=20)
    assert seen[0][0] == (20, 20, 3)


# ---------------------------------------------------------------------------------- tracker
def box(cx: float, cy: float, w: float, h: float | None = None) -> np.ndarray:
    h = w if h is None else h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


def smoothed(values: np.ndarray, smooth: int) -> np.ndarray:
    """Centred moving average of ``smooth`` frames, the window shrunk symmetrically at the ends
    (independent of the code under test)."""
    half, n = smooth // 2, len(values)
    return np.array([np.mean(values[t - min(half, t, n - 1 - t): t + min(half, t, n - 1 - t) + 1])
                     for t in range(n)])


def path(x0: float, v: float, a: float, n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    return x0 + v * t + a * t * t


#: Tracker tolerance (px). On the paths below (x = x0 + v t + a t^2, |a| = 1.5 px/frame^2) a
#: centred mean over 2h + 1 frames lies a h (h + 1) / 3 off the path: 1.0 px for the 3-frame
#: window inside the clip, 0 at both ends (the window shrinks to one frame there); a 5-frame
#: window lies 3.0 px off (2 px from the right value), a trailing 3-frame window lags by about
#: a frame's motion (10 to 60 px here), and a window not shrunk at the ends moves the end boxes
#: by half a frame's motion (5 px or more). 0.01 px is far below all of these and far above
#: float32 rounding of coordinates under 1000 px (~1e-4).
TOL = 0.01


@pytest.mark.parametrize(("x0", "v", "a", "other_x"), [(60.0, 12.0, 1.5, 560.0), (580.0, -35.0, 1.5, 80.0),
                                                        (320.0, 21.0, -1.5, 80.0)],
                         ids=["from-left", "from-right", "centre"])
@pytest.mark.parametrize("bystander_at", ["start", "end"])
def test_tracker_follows_the_main_person_at_both_ends(x0: float, v: float, a: float, other_x: float,
                                                     bystander_at: str) -> None:
    """The main person (80 x 100 px box, on all 16 frames, accelerating) anywhere in the
    frame, a larger bystander (130 px) on the first or last 3 frames: every box is the main
    person's path smoothed over 3 frames, including frames 0 and 15."""
    n = 16
    xs, ys, sides = path(x0, v, a, n), path(200.0, -2.0, 0.25, n), path(90.0, 1.0, 0.0, n)
    detections = []
    for t in range(n):
        faces = [box(xs[t], ys[t], sides[t] - 10, sides[t] + 10)]  # side = mean of w and h
        if (bystander_at == "start" and t < 3) or (bystander_at == "end" and t >= n - 3):
            faces.insert(0, box(other_x, 150.0, 130.0))  # listed first, larger
        detections.append(faces)
    boxes, found = track_boxes(detections, list(range(n)), n)
    assert found == n and boxes.shape == (n, 4) and boxes.dtype == np.float32
    cx, cy, side = smoothed(xs, 3), smoothed(ys, 3), smoothed(sides, 3)
    want = np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)
    np.testing.assert_allclose(boxes, want, atol=TOL, rtol=0)
    assert abs((boxes[0, 0] + boxes[0, 2]) / 2 - x0) < TOL  # the first frame: exactly its place
    assert abs((boxes[-1, 0] + boxes[-1, 2]) / 2 - xs[-1]) < TOL
    # the tolerance is meaningful: a 5-frame window would be off by 2 px inside the clip
    assert np.abs(smoothed(xs, 5)[2:-2] - cx[2:-2]).min() > 100 * TOL
    # smooth=1 keeps the detections; smooth=5 is the 5-frame centred mean
    exact, _ = track_boxes(detections, list(range(n)), n, smooth=1)
    np.testing.assert_allclose((exact[:, 0] + exact[:, 2]) / 2, xs, atol=TOL, rtol=0)
    wide, _ = track_boxes(detections, list(range(n)), n, smooth=5)
    np.testing.assert_allclose((wide[:, 0] + wide[:, 2]) / 2, smoothed(xs, 5), atol=TOL, rtol=0)


def test_tracker_fills_gaps_holds_the_ends_and_maps_examined_frames() -> None:
    """Detections on examined frames 2, 6, 10 of 14 (``frame_ids``): frames between are
    interpolated, frames 0-1 hold the first box and 11-13 the last."""
    detections = [[box(100, 50, 40)], [box(120, 60, 44)], [box(130, 70, 50)]]
    boxes, found = track_boxes(detections, [2, 6, 10], 14, smooth=1)
    assert found == 3
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    side = boxes[:, 2] - boxes[:, 0]
    np.testing.assert_allclose(cx, [100, 100, 100, 105, 110, 115, 120, 122.5, 125, 127.5, 130, 130, 130, 130],
                               atol=TOL)
    np.testing.assert_allclose(cy, [50, 50, 50, 52.5, 55, 57.5, 60, 62.5, 65, 67.5, 70, 70, 70, 70], atol=TOL)
    np.testing.assert_allclose(side, [40, 40, 40, 41, 42, 43, 44, 45.5, 47, 48.5, 50, 50, 50, 50], atol=TOL)
    np.testing.assert_allclose(boxes[:, 3] - boxes[:, 1], side, atol=TOL)  # square boxes
    # smoothing over 3 at the held start: frames 0..2 hold 100, frame 3 averages 100, 105, 110
    smooth3, _ = track_boxes(detections, [2, 6, 10], 14)
    c3 = (smooth3[:, 0] + smooth3[:, 2]) / 2
    np.testing.assert_allclose(c3[:5], [100, 100, (100 + 100 + 105) / 3, 105, 110], atol=TOL)
    assert track_boxes([[], []], [0, 1], 2) == (None, 0)
    # unsorted frame keys are fine (the track is a dict)
    filled = fill_and_smooth({4: box(20, 0, 10), 0: box(0, 0, 10)}, 5, smooth=1)
    np.testing.assert_allclose((filled[:, 0] + filled[:, 2]) / 2, [0, 5, 10, 15, 20], atol=TOL)
    one = fill_and_smooth({1: box(7, 8, 4)}, 3, smooth=3)
    np.testing.assert_allclose(one, np.tile(box(7, 8, 4), (3, 1)), atol=TOL)
    tiny = fill_and_smooth({0: np.array([5, 5, 5, 5], np.float32)}, 1, smooth=3)  # sides floor at 1
    np.testing.assert_allclose(tiny, [[4.5, 4.5, 5.5, 5.5]], atol=TOL)


def test_main_track_is_the_largest_summed_area_ties_to_the_earlier_start() -> None:
    small_long = {t: box(100, 100, 40) for t in range(16)}  # 16 x 1600 = 25600
    large_short = {t: box(400, 100, 100) for t in range(12, 16)}  # 4 x 10000 = 40000
    assert main_track([small_long, large_short]) is large_short  # area, not frame count
    early = {t: box(100, 100, 40) for t in range(0, 4)}
    late = {t: box(400, 100, 40) for t in range(8, 12)}
    assert main_track([late, early]) is early and main_track([early, late]) is early
    wide = {0: np.array([0, 0, 30, 10], np.float32)}  # 300 = 20 x 15
    tall = {1: np.array([0, 0, 20, 15], np.float32)}
    assert main_track([tall, wide]) is wide  # equal areas: the track that starts first
    assert main_track([]) is None


def test_linking_thresholds_and_greedy_matching() -> None:
    """A face continues a track within LINK_DISTANCE face widths per frame since it was last
    seen (up to MAX_GAP frames) and within MAX_SCALE in size; closest pairs first."""
    assert (LINK_DISTANCE, MAX_SCALE, MAX_GAP) == (0.75, 1.5, 4)
    assert len(link_tracks([[box(100, 100, 40)], [box(130, 100, 40)]])) == 1  # 30 / 40 = 0.75
    assert len(link_tracks([[box(100, 100, 40)], [box(130.5, 100, 40)]])) == 2
    assert len(link_tracks([[box(100, 100, 40)], [box(100, 130, 40)]])) == 1  # vertically too
    assert len(link_tracks([[box(100, 100, 40)], [box(100, 130.5, 40)]])) == 2
    assert len(link_tracks([[box(100, 100, 40)], [box(100, 100, 60)]])) == 1  # x 1.5
    assert len(link_tracks([[box(100, 100, 40)], [box(100, 100, 60.5)]])) == 2
    assert len(link_tracks([[box(100, 100, 60)], [box(100, 100, 40)]])) == 1  # / 1.5
    assert len(link_tracks([[box(100, 100, 60.5)], [box(100, 100, 40)]])) == 2
    # distance is measured in mean face sizes: sides 40 and 50 -> 45; 0.75 x 45 = 33.75
    assert len(link_tracks([[box(100, 100, 40)], [box(133.75, 100, 50)]])) == 1
    assert len(link_tracks([[box(100, 100, 40)], [box(134, 100, 50)]])) == 2
    # after 4 frames unseen the allowed distance is 4 x 0.75 widths; after 5 the track is closed
    gap4 = link_tracks([[box(100, 100, 40)], [], [], [], [box(219, 100, 40)]])
    assert len(gap4) == 1 and sorted(gap4[0]) == [0, 4]
    assert len(link_tracks([[box(100, 100, 40)], [], [], [], [box(221, 100, 40)]])) == 2
    assert len(link_tracks([[box(100, 100, 40)], [], [], [], [], [box(100, 100, 40)]])) == 2
    # greedy, closest first: P (100) and Q (140) meet faces at 118 and 128 -> Q-128 (12 px)
    # is taken first, then P-118 (18 px), although P-128 (28 px) would also be in reach
    tracks = link_tracks([[box(100, 0, 40), box(140, 0, 40)], [box(118, 0, 40), box(128, 0, 40)]])
    assert len(tracks) == 2
    assert [float(tr[1][0]) + 20 for tr in tracks] == [118.0, 128.0]
    # one face, two tracks in reach: only the closer track takes it
    tracks = link_tracks([[box(100, 0, 40), box(150, 0, 40)], [box(120, 0, 40)]])
    assert [sorted(tr) for tr in tracks] == [[0, 1], [0]]
    # the nearer of two faces a track could take is taken, the other starts its own track
    tracks = link_tracks([[box(100, 0, 40)], [box(110, 0, 40), box(88, 0, 40)]])
    assert [sorted(tr) for tr in tracks] == [[0, 1], [1]] and float(tracks[0][1][0]) + 20 == 110
    # a pair already served is skipped, and the pairs after it still link: Q-136 (4 px), then
    # Q-125 (Q taken, skipped), then P-125 (25 px)
    tracks = link_tracks([[box(100, 0, 40), box(140, 0, 40)], [box(125, 0, 40), box(136, 0, 40)]])
    assert [float(tr[1][0]) + 20 for tr in tracks] == [125.0, 136.0]
    # a face of the wrong size does not stop the track from taking the next face in the list
    tracks = link_tracks([[box(100, 0, 40)], [box(100, 0, 90), box(104, 0, 40)]])
    assert len(tracks) == 2 and float(tracks[0][1][0]) + 20 == 104.0
    # boxes with the detector's score as a fifth number, in float64: stored as float32
    scored = [[np.append(box(100, 0, 40), 0.9).astype(np.float64)],
              [np.append(box(110, 0, 40), 0.8).astype(np.float64), np.append(box(400, 0, 40), 0.7)]]
    tracks = link_tracks(scored)
    assert [sorted(tr) for tr in tracks] == [[0, 1], [1]]
    assert tracks[0][0].dtype == tracks[0][1].dtype == tracks[1][1].dtype == np.float32
    # a face no track takes starts a new one; boxes are stored as float32
    tracks = link_tracks([[box(0, 0, 10)], [box(0, 0, 10), box(500, 0, 10)]])
    assert [sorted(tr) for tr in tracks] == [[0, 1], [1]] and tracks[1][1].dtype == np.float32
    # distances compare per frame of gap: A (last seen 2 frames ago, 30 px away: 0.375 per
    # frame) takes the face before B (seen a frame ago, also 30 px away: 0.75)
    tracks = link_tracks([[box(160, 0, 40), box(100, 0, 40)], [box(160, 0, 40)], [box(130, 0, 40)]])
    assert [sorted(tr) for tr in tracks] == [[0, 1], [0, 2]]


# ---------------------------------------------------------------------------- frame sampling
def _round_half_even(x: Fraction) -> int:
    lo = math.floor(x)
    if x - lo != Fraction(1, 2):
        return lo + (x - lo > Fraction(1, 2))
    return lo if lo % 2 == 0 else lo + 1


@pytest.mark.parametrize(("n", "t"), [(1, 1), (1, 4), (2, 5), (3, 6), (5, 3), (7, 4), (16, 16), (30, 16),
                                      (31, 8), (32, 8), (100, 7), (301, 16), (9, 2)])
def test_sampling_rules_against_exact_arithmetic(n: int, t: int) -> None:
    """Decode: floor((k + 1/2) N / T). Spread: round-half-to-even of k (N - 1) / (T - 1) (the
    first and last frame included), never more than N frames for ``uniform_indices``."""
    decode = [math.floor(Fraction(2 * k + 1, 2) * n / t) for k in range(t)]
    assert sample_indices(n, t).tolist() == decode and sample_indices(n, t).dtype == np.int32
    spread = [0] if t == 1 else [_round_half_even(Fraction(k * (n - 1), t - 1)) for k in range(t)]
    assert spread_indices(n, t).tolist() == spread and spread_indices(n, t).dtype == np.int64
    assert uniform_indices(n, t).tolist() == (spread if t < n else list(range(n)))
    assert uniform_indices(n, None).tolist() == list(range(n))


def test_sampling_by_hand_and_rejected_sizes() -> None:
    assert sample_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]  # the module doc's example
    assert sample_indices(10, 4).tolist() == [1, 3, 6, 8]  # 1.25, 3.75, 6.25, 8.75 floored
    assert spread_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert spread_indices(8, 3).tolist() == [0, 4, 7]  # 3.5 rounds half to even: 4
    assert spread_indices(6, 3).tolist() == [0, 2, 5]  # 2.5 -> 2 (half to even, not truncation up)
    assert spread_indices(32, 8).tolist() == [0, 4, 9, 13, 18, 22, 27, 31]  # 4.43 rounds, not 4 -> 4
    assert uniform_indices(5, 5).tolist() == [0, 1, 2, 3, 4]
    for bad in ((0, 4), (-1, 4)):
        with pytest.raises(ValueError, match=f"cannot sample from a clip with {bad[0]} frames"):
            sample_indices(*bad)
    with pytest.raises(ValueError, match="num_frames must be >= 1, got 0"):
        sample_indices(5, 0)


@pytest.mark.parametrize(("n", "t"), [(32, 8), (10, 4), (13, 5), (9, 8)])
def test_jittered_indices_draw_every_frame_of_each_segment_and_nothing_else(n: int, t: int) -> None:
    """Segment k is frames floor(k N / T) .. floor((k + 1) N / T) - 1; each draw takes one
    frame of each, and over many draws every frame of every segment comes up."""
    edges = [math.floor(Fraction(k * n, t)) for k in range(t + 1)]
    rng = np.random.default_rng(0)
    draws = np.stack([jittered_indices(n, t, rng) for _ in range(400)])
    assert draws.dtype == np.int64 and draws.shape == (400, t)
    for k in range(t):
        assert set(draws[:, k].tolist()) == set(range(edges[k], max(edges[k + 1], edges[k] + 1))), k
    state = rng.bit_generator.state
    assert jittered_indices(8, 8, rng).tolist() == list(range(8))
    assert jittered_indices(5, 9, rng).tolist() == list(range(5))
    assert jittered_indices(5, None, rng).tolist() == list(range(5))
    assert rng.bit_generator.state == state  # nothing drawn when there is nothing to draw
    a = jittered_indices(100, 10, np.random.default_rng(3))
    assert a.tolist() == jittered_indices(100, 10, np.random.default_rng(3)).tolist()  # seeded


# ------------------------------------------------------------------------------- skipping
class _Codec:
    """A scripted decoder: a packet's frame comes out ``delay`` packets later (the flush packet
    releases what it holds), unless the frame is non-reference and skipping is on; the skip
    setting accepts what PyAV's does (an invalid one is a ValueError, as there). Records
    (pts, skip setting) per packet."""

    def __init__(self, fail_at: int | None = None, unknown: set | None = None, drop: set | None = None,
                 delay: int = 0) -> None:
        self._skip = "DEFAULT"
        self.log: list[tuple] = []
        self.fail_at, self.unknown, self.drop, self.delay = fail_at, unknown or set(), drop or set(), delay
        self.held: list = []

    @property
    def skip_frame(self) -> str:
        return self._skip

    @skip_frame.setter
    def skip_frame(self, value: str) -> None:
        if value not in ("DEFAULT", "NONREF", "NONKEY", "ALL", "NONE", "BIDIR", "NONINTRA"):
            raise ValueError("Invalid skip_frame type")
        self._skip = value

    def decode(self, packet):
        self.log.append((packet.pts, self.skip_frame))
        if packet.pts is None:  # the flush packet: release what is held
            out, self.held = self.held, []
            return out
        if packet.size <= 0 or packet.is_discard or packet.pts in self.drop:
            return []
        if packet.pts == self.fail_at:
            import av

            raise av.error.InvalidDataError(1094995529, "bad packet")
        if self.skip_frame == "NONREF" and not packet.ref:
            return []
        self.held.append(SimpleNamespace(pts=packet.pts + 1 if packet.pts in self.unknown else packet.pts))
        out, self.held = self.held[: len(self.held) - self.delay], self.held[len(self.held) - self.delay:]
        return out


class _Container:
    def __init__(self, packets: list, codec: _Codec) -> None:
        self.packets, self.seeks = packets, []
        self.video = SimpleNamespace(codec_context=codec)
        self.streams = SimpleNamespace(video=[self.video])

    def demux(self, stream):
        assert stream is self.video, "demuxed another stream than the video's"
        yield from self.packets

    def seek(self, offset):
        self.seeks.append(offset)


def _packet(pts, ref=True, size=100, discard=False):
    return SimpleNamespace(pts=pts, ref=ref, size=size, is_discard=discard)


#: decode order of an I P B B P B B stream with timestamps in 512ths (frame i at 512 i + 1024),
#: a discarded packet before it (cut by an edit list) and the flush packet after it
GOP = [_packet(0, discard=True), _packet(1024), _packet(2560), _packet(1536, ref=False), _packet(2048, ref=False),
       _packet(4096), _packet(3072, ref=False), _packet(3584, ref=False), _packet(None, size=0)]


def test_presentation_ranks_from_timestamps() -> None:
    def ranks(packets: list):
        container = _Container(packets, _Codec())
        return presentation_ranks(container, container.video)

    assert ranks(GOP) == {1024: 0, 1536: 1, 2048: 2, 2560: 3, 3072: 4, 3584: 5, 4096: 6}
    assert ranks([_packet(5), _packet(None)]) is None  # a packet without a timestamp
    assert ranks([_packet(5), _packet(5)]) is None  # two with the same
    assert ranks([_packet(7), _packet(3, size=0), _packet(3)]) == {3: 0, 7: 1}  # no data: no frame
    assert ranks([_packet(7), _packet(3, size=1)]) == {3: 0, 7: 1}  # one byte is data


def test_skipping_decodes_the_wanted_frames_and_skips_unwanted_non_reference_ones() -> None:
    codec = _Codec()
    container = _Container(GOP, codec)
    out = decode_skipping(container, np.array([1, 4]), 7, lambda f: f.pts)
    # wanted: frame 1 (pts 1536) and frame 4 (pts 3072); frame 2 (2048, a B-frame) skipped
    assert out == ({1: 1536, 4: 3072}, 5)  # decoded: 1024, 2560, 1536, 4096, 3072
    assert container.seeks == [0]
    assert codec.log == [(0, "DEFAULT"), (1024, "NONREF"), (2560, "NONREF"), (1536, "DEFAULT"), (2048, "NONREF"),
                         (4096, "NONREF"), (3072, "DEFAULT")]
    assert codec.skip_frame == "DEFAULT"  # left as found for the next user
    # the last frame wanted: the decoder runs to the flush packet
    codec = _Codec()
    assert decode_skipping(_Container(GOP, codec), np.array([6, 0, 6]), 7, lambda f: f.pts) == (
        {0: 1024, 6: 4096}, 3)
    everything = decode_skipping(_Container(GOP, _Codec()), np.arange(7), 7, lambda f: f.pts)
    assert everything == ({i: 1024 + 512 * i for i in range(7)}, 7)


def test_frames_the_decoder_holds_back_come_out_at_the_flush() -> None:
    """A decoder with one frame of delay: the last wanted frame comes out when the flush packet
    is sent, which is decoded with skipping off; a 1-byte packet is a frame like any other,
    and a packet without data is never skipped."""
    packets = [_packet(1024), _packet(2560), _packet(1536, ref=False, size=1), _packet(2048, ref=False),
               _packet(2048, size=0), _packet(None, size=0)]
    codec = _Codec(delay=1)
    out = decode_skipping(_Container(packets, codec), np.array([1, 3]), 4, lambda f: f.pts)
    assert out == ({1: 1536, 3: 2560}, 3)  # decoded: 1024, 2560, 1536 (2048 skipped)
    assert codec.log == [(1024, "NONREF"), (2560, "DEFAULT"), (1536, "DEFAULT"), (2048, "NONREF"),
                         (2048, "DEFAULT"), (None, "DEFAULT")]
    assert codec.skip_frame == "DEFAULT"
    codec = _Codec(delay=1)
    assert decode_skipping(_Container(packets, codec), np.array([2]), 4, lambda f: f.pts) == ({2: 2048}, 3)


def test_skipping_gives_up_whenever_it_cannot_be_exact() -> None:
    """None (decode every frame instead) when the count disagrees with the header, a decoded
    frame's timestamp is no packet's, a wanted frame never comes, or decoding fails."""
    wanted = np.array([1, 4])
    assert decode_skipping(_Container(GOP, _Codec()), wanted, 8, lambda f: f.pts) is None
    assert decode_skipping(_Container(GOP[:1] + [_packet(None)], _Codec()), wanted, 1, lambda f: f.pts) is None
    assert decode_skipping(_Container(GOP, _Codec(unknown={2560})), wanted, 7, lambda f: f.pts) is None
    assert decode_skipping(_Container(GOP, _Codec(drop={3072})), wanted, 7, lambda f: f.pts) is None
    assert decode_skipping(_Container(GOP, _Codec(fail_at=2560)), wanted, 7, lambda f: f.pts) is None
    for exc in (ValueError("odd"), OSError("gone")):
        def convert(frame, exc=exc):
            raise exc
        assert decode_skipping(_Container(GOP, _Codec()), wanted, 7, convert) is None
    none_pts = [_packet(1024), _packet(1536)]
    codec = _Codec()
    codec.decode = lambda packet: [SimpleNamespace(pts=None)]
    assert decode_skipping(_Container(none_pts, codec), np.array([1]), 2, lambda f: f.pts) is None


# ---------------------------------------------------------------------------- orientation
#: a 2 x 3 picture a b c / d e f, stored as numbers 1..6
PICTURE = np.array([[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(("rotation", "mirrored", "shown"), [
    (0, False, [[1, 2, 3], [4, 5, 6]]),
    (None, False, [[1, 2, 3], [4, 5, 6]]),
    (90, False, [[3, 6], [2, 5], [1, 4]]),  # a quarter turn counter-clockwise
    (-90, False, [[4, 1], [5, 2], [6, 3]]),  # clockwise
    (270, False, [[4, 1], [5, 2], [6, 3]]),
    (180, False, [[6, 5, 4], [3, 2, 1]]),
    (-180, False, [[6, 5, 4], [3, 2, 1]]),
    (89.6, False, [[3, 6], [2, 5], [1, 4]]),  # rounded to quarter turns
    (44, False, [[1, 2, 3], [4, 5, 6]]),
    (45.3, False, [[3, 6], [2, 5], [1, 4]]),  # 0.503 quarter turns -> 1
    (-135.5, False, [[6, 5, 4], [3, 2, 1]]),  # -1.506 -> -2, a half turn
    (0, True, [[4, 5, 6], [1, 2, 3]]),  # mirrored: upside down first, then turned
    (-180, True, [[3, 2, 1], [6, 5, 4]]),  # FFmpeg's reading of a left-right mirror
    (90, True, [[6, 3], [5, 2], [4, 1]]),
    (-90, True, [[1, 4], [2, 5], [3, 6]]),
])
def test_upright_applies_the_display_matrix(rotation, mirrored, shown) -> None:
    out = upright(PICTURE, rotation, mirrored)
    assert out.tolist() == shown
    assert out.flags.c_contiguous  # the detector and cv2 need contiguous pixels
    if rotation in (0, None) and not mirrored:
        assert out is PICTURE  # no copy when nothing changes
        view = PICTURE[:, ::2]
        assert upright(view, rotation) is view  # not even of a strided picture
    if not mirrored:
        assert upright(PICTURE, rotation).tolist() == shown  # not mirrored unless said


def _matrix_frame(*entries: int, kind: str = "DISPLAYMATRIX") -> SimpleNamespace:
    data = np.array(entries + (0,) * (9 - len(entries)), dtype="<i4").tobytes()

    class Side:
        type = SimpleNamespace(name=kind)

        def __bytes__(self) -> bytes:
            return data

    return SimpleNamespace(side_data=[Side()])


def test_is_mirrored_reads_the_sign_of_the_display_matrix() -> None:
    one = 1 << 16  # 16.16 fixed point
    assert not is_mirrored(_matrix_frame(one, 0, 0, 0, one))  # identity
    assert is_mirrored(_matrix_frame(-one, 0, 0, 0, one))  # left-right mirror
    assert is_mirrored(_matrix_frame(one, 0, 0, 0, -one))  # upside-down mirror
    assert not is_mirrored(_matrix_frame(0, one, 0, -one, 0))  # a quarter turn: det = +1
    assert is_mirrored(_matrix_frame(0, one, 0, one, 0))  # turn + mirror: det = -1
    assert not is_mirrored(_matrix_frame(-one, 0, 0, 0, -one))  # half turn: det = +1
    assert not is_mirrored(_matrix_frame(-one, 0, 0, 0, one, kind="SPHERICAL"))  # another side data
    assert not is_mirrored(SimpleNamespace(side_data=[]))
    assert not is_mirrored(_matrix_frame(0, 0, 0, 0, 0))  # a degenerate matrix mirrors nothing
    assert not is_mirrored(_matrix_frame(one, one, 0, one, one))  # det 0
    # 32768 x 65536 overflows int32: the determinant is computed in Python ints
    assert is_mirrored(_matrix_frame(-32768 * 2, 0, 0, 0, 1 << 30))
