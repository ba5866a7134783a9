"""Training flips keep anatomy (issue 22): a mirrored face's left eye is still drawn as a left eye.

The synthetic face here is deliberately lopsided: the subject's right eye (image left) is small,
the left eye (image right) large, so after a flip we can tell which physical eye went where.
Mirroring the *rendered* images would leave the large eye's left-eye colour on the image's left,
where a frontal face has its right eye; the flip must instead mirror the renderers' inputs (x
mirrored, the 68 points re-indexed, parsing labels ``l_*`` <-> ``r_*``). Expected values are
built here: the 68-point mirror pairs written out by hand from the iBUG layout, the colours
copied from the palette's table (docs/face_stages.md), and the flipped training item compared
with arrays this file computes, not with ``prepare_clip``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from face_geometry import square_face
from support.dataset import write_synthetic_dataset

from dfer.core.artifacts import provenance, write_parquet, write_safetensors
from dfer.core.paths import shard_file
from dfer.train.data import ClipDataset, DataConfig, Needs, load_clip_table
from dfer.train.render import (
    PALETTE,
    mirror_parsing,
    mirror_points,
    overlay_on_face,
    render_landmarks,
    render_parsing,
)

S = 64
L_EYE_RGB = (0, 255, 160)  # PART_COLOURS["l_eye"] and PALETTE[4]
R_EYE_RGB = (0, 255, 0)  # PART_COLOURS["r_eye"] and PALETTE[5]
# canonical parsing ids (dfer.parsing.labels): 1 skin, 2 l_brow, 3 r_brow, 4 l_eye, 5 r_eye,
# 6 nose, 7 upper_lip, 9 lower_lip
SKIN, L_BROW, R_BROW, L_EYE, R_EYE, NOSE, UPPER_LIP, LOWER_LIP = 1, 2, 3, 4, 5, 6, 7, 9

#: the 68-point mirror, pair by pair (iBUG 300-W: jaw 0-16 from the subject's right ear, brows
#: 17-21 right / 22-26 left from the outside in ... , eyes from the outer corner clockwise)
MIRROR_PAIRS = (
    [(i, 16 - i) for i in range(8)]                                  # jaw; 8 = chin
    + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]             # brows
    + [(31, 35), (32, 34)]                                           # nose base; 33 stays
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]   # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]             # outer lips; 51, 57 stay
    + [(60, 64), (61, 63), (65, 67)]                                 # inner lips; 62, 66 stay
)
LR_LABELS = {L_BROW: R_BROW, R_BROW: L_BROW, L_EYE: R_EYE, R_EYE: L_EYE, 11: 12, 12: 11}


def lopsided_points() -> np.ndarray:
    """square_face at 64 px with the subject's left eye (42-47, image right) 1.6x larger."""
    pts = square_face() * (S / 224)
    c = pts[42:48].mean(0)
    pts[42:48] = c + 1.6 * (pts[42:48] - c)
    return pts.astype(np.float32)


def lopsided_map() -> np.ndarray:
    """A label map: skin, brows, a small right eye (image left), a large left eye (right)."""
    m = np.zeros((S, S), np.uint8)
    m[16:58, 11:53] = SKIN
    m[18:21, 16:29] = R_BROW
    m[18:21, 35:48] = L_BROW
    m[25:30, 18:27] = R_EYE    # 5 x 9 px
    m[23:32, 36:49] = L_EYE    # 9 x 13 px
    m[28:38, 30:34] = NOSE
    m[42:45, 24:40] = UPPER_LIP
    m[45:48, 24:40] = LOWER_LIP
    return m


def hand_mirror_points(pts: np.ndarray) -> np.ndarray:
    out = pts.copy()
    for a, b in MIRROR_PAIRS:
        out[a], out[b] = pts[b], pts[a]
    out[:, 0] = (S - 1) - out[:, 0]
    return out


def hand_mirror_map(m: np.ndarray) -> np.ndarray:
    flipped = m[:, ::-1]
    return np.vectorize(lambda v: LR_LABELS.get(int(v), int(v)))(flipped).astype(np.uint8)


def test_the_left_eye_keeps_its_colour_through_a_flip() -> None:
    face = lopsided_map()
    before = render_parsing(face)
    assert tuple(before[27, 42]) == L_EYE_RGB and tuple(before[27, 22]) == R_EYE_RGB
    flipped = mirror_parsing(face)
    np.testing.assert_array_equal(flipped, hand_mirror_map(face))
    after = render_parsing(flipped)
    # the subject's left eye is on the image's right before and after, in left-eye colours;
    # after the flip it is the former small eye (45 px), mirrored
    assert tuple(after[27, 41]) == L_EYE_RGB and tuple(after[27, 21]) == R_EYE_RGB
    assert np.all(after == np.array(L_EYE_RGB), axis=-1).sum() == 5 * 9
    assert np.all(after == np.array(R_EYE_RGB), axis=-1).sum() == 9 * 13
    # flipping the rendered image instead would put the left-eye colour on the image's left
    assert tuple(before[:, ::-1][27, 21]) == L_EYE_RGB

    pts = lopsided_points()
    mirrored = mirror_points(pts, S)
    np.testing.assert_allclose(mirrored, hand_mirror_points(pts), atol=1e-6)
    marks = render_landmarks(mirrored, S)
    for i in range(42, 48):  # every left-eye dot sits on the image's right, in left-eye colour
        x, y = np.round(mirrored[i]).astype(int)
        assert x > S // 2 and tuple(marks[y, x]) == L_EYE_RGB, i
    for i in range(36, 42):
        x, y = np.round(mirrored[i]).astype(int)
        assert x < S // 2 and tuple(marks[y, x]) == R_EYE_RGB, i
    # the left eye's dots are now the small eye's: its width is the former right eye's
    width = lambda p: float(p[:, 0].max() - p[:, 0].min())  # noqa: E731
    assert width(mirrored[42:48]) == pytest.approx(width(pts[36:42]), abs=1e-5)
    assert np.isnan(mirror_points(np.full((68, 2), np.nan), S)).all()


@pytest.fixture(scope="module")
def flip_results(tmp_path_factory):
    """A 2-frame clip whose frames, landmarks and parsing maps are the lopsided face."""
    root = tmp_path_factory.mktemp("flip")
    ids = write_synthetic_dataset(root, "flip", num_classes=2, clips_per_class=1, frames=2,
                                  size=S, num_shards=1)
    rng = np.random.default_rng(3)
    frames = {c: rng.integers(0, 256, size=(2, S, S, 3), dtype=np.uint8) for c in ids}
    maps = {c: np.stack([lopsided_map()] * 2) for c in ids}
    pts = lopsided_points()
    rows = [{"clip_id": c, "frame": t, "has_face": True, "filled_from": t,
             "bbox": [0.0, 0.0, float(S), float(S)], "score": 1.0,
             "points": (pts + t).reshape(-1).tolist()} for c in ids for t in range(2)]
    write_safetensors(shard_file(root, "flip", "frames", "000", ".safetensors"), frames,
                      provenance("frames", 1, backend="synthetic"))
    write_safetensors(shard_file(root, "flip", "parsing", "000", ".safetensors"), maps,
                      provenance("parsing", 1, backend="synthetic"))
    write_parquet(shard_file(root, "flip", "landmarks", "000", ".parquet"), pd.DataFrame(rows),
                  provenance("landmarks", 1, backend="synthetic"))
    return root, frames, pts


def test_a_flipped_training_item_mirrors_frames_points_and_labels(flip_results) -> None:
    root, frames, pts = flip_results
    needs = Needs(parsing=True, landmarks=True)
    table = load_clip_table(root, "flip", needs)
    cfg = DataConfig(num_workers=0, flip=True, num_frames=2, mid_frames=2, image_size=S)
    ds = ClipDataset("flip", table.clips, table, needs, cfg, S, train=True, seed=0)
    clip = str(table.clips.loc[0, "clip_id"])
    # the item's flip draw, as ClipDataset documents it: per (seed, epoch, clip index)
    draws = {e: np.random.default_rng([0, e, 0]).random() < 0.5 for e in range(8)}
    flipped_epoch = next(e for e, f in draws.items() if f)
    plain_epoch = next(e for e, f in draws.items() if not f)

    ds.epoch = flipped_epoch
    item = ds[0]
    want_frames = frames[clip][:, :, ::-1]
    np.testing.assert_array_equal(item["frames"].numpy(), want_frames)
    for t in range(2):
        marks = render_landmarks(hand_mirror_points(pts + t), S)
        np.testing.assert_array_equal(item["landmarks"][t].numpy(),
                                      overlay_on_face(want_frames[t], marks))
        want_map = hand_mirror_map(lopsided_map())
        np.testing.assert_array_equal(item["parsing"][t].numpy(), PALETTE[want_map])
        assert tuple(item["parsing"][t, 27, 41].tolist()) == L_EYE_RGB
        x, y = np.round(hand_mirror_points(pts + t)[45]).astype(int)  # left eye, outer corner
        assert tuple(item["landmarks"][t, y, x].tolist()) == L_EYE_RGB

    ds.epoch = plain_epoch
    item = ds[0]
    np.testing.assert_array_equal(item["frames"].numpy(), frames[clip])
    np.testing.assert_array_equal(item["parsing"][0].numpy(), PALETTE[lopsided_map()])
    np.testing.assert_array_equal(item["landmarks"][0].numpy(),
                                  overlay_on_face(frames[clip][0], render_landmarks(pts, S)))
    assert isinstance(item["frames"], torch.Tensor)
