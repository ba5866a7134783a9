"""Which stored frames an evaluated clip's three levels are made of, by hand (issue 25).

``tests/test_train.py`` builds its reference inputs with the same ``prepare_clip`` the
evaluation uses, so a wrong frame index there passes it. Here the frames, parsing maps and
landmarks of a synthetic clip encode their frame number, and the expected indices are worked
out by hand: evenly spaced with rounding (not truncation), the middle level a subsample of the
video level's frames. Flipped training items are tested with the flip change (issue 22).
"""

from __future__ import annotations

import numpy as np
import pytest

from dfer.train.config import DataConfig
from dfer.train.data import prepare_clip

T, S = 32, 16


def _clip() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame k is grey level 5 k + 3; parsing map k is label k; landmark k: 68 points at
    (k / 4, k / 4), so the stand-in renderers below say which frame they were made from."""
    frames = np.stack([np.full((S, S, 3), 5 * k + 3, np.uint8) for k in range(T)])
    maps = np.stack([np.full((S, S), k, np.uint8) for k in range(T)])
    points = np.stack([np.full((68, 2), k / 4, np.float32) for k in range(T)])
    return frames, points, maps


def render_landmarks(points: np.ndarray, size: int) -> np.ndarray:
    """One white dot (at the points' first position) on black."""
    img = np.zeros((size, size, 3), np.uint8)
    x, y = (int(round(v)) for v in points[0])
    img[y, x] = 255
    return img


def render_parsing(label_map: np.ndarray, size: int) -> np.ndarray:
    """Label k -> grey 2 k + 1 (at the map's size)."""
    return np.repeat((2 * label_map.astype(np.int32) + 1).astype(np.uint8)[:, :, None], 3, axis=2)


RENDERERS = (render_landmarks, render_parsing)


@pytest.mark.parametrize(("num", "mid", "video", "middle"), [
    # 8 of 32: k 31 / 7 = 0, 4.43, 8.86, 13.29, 17.71, 22.14, 26.57, 31 rounded
    (8, None, [0, 4, 9, 13, 18, 22, 27, 31], [0, 4, 9, 13, 18, 22, 27, 31]),
    # middle level: 3 of those 8 -> positions 0, 3.5 -> 4 (half to even), 7 -> frames 0, 18, 31
    (8, 3, [0, 4, 9, 13, 18, 22, 27, 31], [0, 18, 31]),
    # 5 of 32: 0, 7.75, 15.5, 23.25, 31 -> 0, 8, 16 (half to even), 23, 31; middle 2: first, last
    (5, 2, [0, 8, 16, 23, 31], [0, 31]),
    # more wanted than stored: every frame once
    (40, 4, list(range(32)), [0, 10, 21, 31]),
])
def test_evaluated_clip_is_made_of_the_evenly_spaced_frames(num, mid, video, middle) -> None:
    frames, points, maps = _clip()
    cfg = DataConfig(num_frames=num, mid_frames=mid, landmarks_on_face=False)
    item = prepare_clip(frames, points, maps, cfg, S, RENDERERS)
    got = item["frames"].numpy()
    assert got.shape == (len(video), S, S, 3)
    assert ((got[:, 0, 0, 0].astype(int) - 3) // 5).tolist() == video
    assert ((item["parsing"].numpy()[:, 0, 0, 0].astype(int) - 1) // 2).tolist() == middle
    dots = item["landmarks"].numpy()[..., 0]
    assert [int(np.argwhere(d == 255)[0][0]) for d in dots] == [round(k / 4) for k in middle]
    # on the face (the paper's input): the video frame of the same index under the dot
    on_face = prepare_clip(frames, points, maps, DataConfig(num_frames=num, mid_frames=mid), S, RENDERERS)
    grey = on_face["landmarks"].numpy()[:, S - 1, S - 1, 0]
    assert ((grey.astype(int) - 3) // 5).tolist() == middle
    # resized to the model's input size: still the same frames
    big = prepare_clip(frames, points, maps, cfg, 2 * S, RENDERERS)
    assert big["frames"].shape == (len(video), 2 * S, 2 * S, 3)
    assert ((big["frames"].numpy()[:, 5, 5, 0].astype(int) - 3) // 5).tolist() == video
    assert ((big["parsing"].numpy()[:, 5, 5, 0].astype(int) - 1) // 2).tolist() == middle


def test_evaluation_ignores_the_training_jitter() -> None:
    """``temporal_jitter`` draws frames only when a random generator is given (training)."""
    frames, points, maps = _clip()
    cfg = DataConfig(num_frames=8, temporal_jitter=True)
    item = prepare_clip(frames, None, None, cfg, S, None)
    assert ((item["frames"].numpy()[:, 0, 0, 0].astype(int) - 3) // 5).tolist() == [0, 4, 9, 13, 18, 22, 27, 31]
    drawn = prepare_clip(frames, None, None, cfg, S, None, np.random.default_rng(0))
    idx = (drawn["frames"].numpy()[:, 0, 0, 0].astype(int) - 3) // 5
    assert all(4 * k <= i < 4 * k + 4 for k, i in enumerate(idx.tolist()))  # one per 4-frame segment
    with pytest.raises(ValueError, match="rendering landmarks needs renderers"):
        prepare_clip(frames, points, None, cfg, S, None)
    with pytest.raises(ValueError, match="31 landmark frames for 32 video frames"):
        prepare_clip(frames, points[:31], None, cfg, S, RENDERERS)
    with pytest.raises(ValueError, match="30 parsing maps for 32 video frames"):
        prepare_clip(frames, None, maps[:30], cfg, S, RENDERERS)
