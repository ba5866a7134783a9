"""Frame samplers and augmentations of dfer.train.sampling, against values worked out by hand.

The random draws go through a scripted generator (it hands out the numbers the test chose), so
the expected frames and crop boxes follow from the public rules by arithmetic alone:
DFER-CLIP's segment rules (``video_dataloader.py:48-70``) and ``GroupRandomSizedCrop``
(``video_transform.py:231-264``), torchvision's ``RandomResizedCrop.get_params`` (CLIPER).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dfer.train.config import DataConfig
from dfer.train.data import prepare_clip
from dfer.train.sampling import (
    Augment,
    apply_colour,
    apply_geometry,
    crop_box_group,
    crop_box_torchvision,
    draw_augment,
    frame_indices,
)


class Scripted:
    """A stand-in for ``np.random.Generator`` that returns the numbers it was given, in order,
    and records what was asked (``uniform``, ``random`` and ``integers`` each from a queue)."""

    def __init__(self, uniform=(), random=(), integers=()) -> None:
        self.queues = {"uniform": list(uniform), "random": list(random), "integers": list(integers)}
        self.calls: list[tuple] = []

    def uniform(self, low, high, size=None):
        self.calls.append(("uniform", low, high))
        return self.queues["uniform"].pop(0)

    def random(self):
        self.calls.append(("random",))
        return self.queues["random"].pop(0)

    def integers(self, low, high, size=None):
        self.calls.append(("integers", low, high, size))
        value = self.queues["integers"].pop(0)
        if size is not None:
            return np.asarray(value(np.asarray(low), np.asarray(high)) if callable(value) else value)
        return value

    def permutation(self, n):
        return np.arange(n)


# --- frame samplers -----------------------------------------------------------------------------


def test_uniform_is_first_last_and_evenly_spaced() -> None:
    assert frame_indices("uniform", 10, 4).tolist() == [0, 3, 6, 9]
    assert frame_indices("uniform", 3, 5).tolist() == [0, 1, 2]  # never more than stored
    assert frame_indices("uniform", 7, None).tolist() == list(range(7))


def test_segment_random_is_dfer_clips_training_rule() -> None:
    # N = 10, T = 4: segments of 10 // 4 = 2 frames from the start; frames 8, 9 never drawn
    last = Scripted(integers=[lambda low, high: high - 1])
    assert frame_indices("segment_random", 10, 4, last).tolist() == [1, 3, 5, 7]
    assert last.calls == [("integers", 0, 2, 4)]
    first = Scripted(integers=[lambda low, high: low])
    assert frame_indices("segment_random", 10, 4, first).tolist() == [0, 2, 4, 6]
    # with a real generator every draw stays in its segment and both frames of each occur
    seen = np.stack([frame_indices("segment_random", 10, 4, np.random.default_rng(s)) for s in range(200)])
    for k in range(4):
        assert set(seen[:, k]) == {2 * k, 2 * k + 1}
    # N = 48, T = 16 (a dense decode): 3 candidates per segment
    assert frame_indices("segment_random", 48, 16, Scripted(integers=[lambda lo, hi: hi - 1])).tolist() == \
        [3 * k + 2 for k in range(16)]
    # fewer stored than wanted: in order, the last repeated (the public 'edge' padding)
    assert frame_indices("segment_random", 3, 5, np.random.default_rng(0)).tolist() == [0, 1, 2, 2, 2]
    assert frame_indices("segment_random", 4, 4, np.random.default_rng(0)).tolist() == [0, 1, 2, 3]


def test_segment_centre_is_dfer_clips_test_rule() -> None:
    # floor((k + 0.5) * N / T): 1.25, 3.75, 6.25, 8.75
    assert frame_indices("segment_centre", 10, 4).tolist() == [1, 3, 6, 8]
    assert frame_indices("segment_centre", 48, 16).tolist() == [3 * k + 1 for k in range(16)]
    assert frame_indices("segment_centre", 16, 16).tolist() == list(range(16))
    assert frame_indices("segment_centre", 3, 5).tolist() == [0, 1, 2, 2, 2]


def test_windows_are_consecutive_frames() -> None:
    assert frame_indices("window_random", 10, 4, Scripted(integers=[6])).tolist() == [6, 7, 8, 9]
    assert frame_indices("window_random", 10, 4, Scripted(integers=[0])).tolist() == [0, 1, 2, 3]
    assert frame_indices("window_centre", 10, 4).tolist() == [3, 4, 5, 6]
    assert frame_indices("window_centre", 3, 5).tolist() == [0, 1, 2, 2, 2]


def test_sampler_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a generator"):
        frame_indices("segment_random", 10, 4)
    with pytest.raises(ValueError, match="unknown frame sampler 'segments'"):
        frame_indices("segments", 10, 4)
    with pytest.raises(ValueError, match="data.test_sampler must be one of"):
        DataConfig.from_dict({"test_sampler": "segment_random"})
    with pytest.raises(ValueError, match="data.train_sampler must be one of"):
        DataConfig.from_dict({"train_sampler": "random"})
    with pytest.raises(ValueError, match="temporal_jitter: true asks for the jitter sampler"):
        DataConfig.from_dict({"temporal_jitter": True, "train_sampler": "segment_random"})
    assert DataConfig.from_dict({"temporal_jitter": True}).train_frames == "jitter"
    assert DataConfig.from_dict({}).train_frames == "uniform"


# --- crop boxes ---------------------------------------------------------------------------------


def test_group_crop_box_by_hand() -> None:
    # area 0.25 of 100 x 100 = 2500, ratio 4/3: w = round(sqrt(3333.3)) = 58, h = round(sqrt(1875)) = 43
    rng = Scripted(uniform=[0.25, 4 / 3], random=[0.7], integers=[10, 20])
    assert crop_box_group(rng, 100, 100, (0.08, 1.0), (3 / 4, 4 / 3)) == (20, 10, 43, 58)
    assert ("integers", 0, 100 - 58 + 1, None) in rng.calls  # left: 0 .. W - w
    # random() < 0.5 swaps the sides
    rng = Scripted(uniform=[0.25, 4 / 3], random=[0.2], integers=[0, 0])
    assert crop_box_group(rng, 100, 100, (0.08, 1.0), (3 / 4, 4 / 3)) == (0, 0, 58, 43)
    # ten boxes that do not fit (area 1, ratio 4/3 on a 100 x 100 frame): the whole frame
    rng = Scripted(uniform=[1.0, 4 / 3] * 10, random=[0.9] * 10)
    assert crop_box_group(rng, 100, 100, (0.08, 1.0), (3 / 4, 4 / 3)) == (0, 0, 100, 100)


def test_torchvision_crop_box_by_hand() -> None:
    # area 0.25 x 10000, log-ratio 0 -> 50 x 50; top first, then left (torchvision's order)
    rng = Scripted(uniform=[0.25, 0.0], integers=[5, 7])
    assert crop_box_torchvision(rng, 100, 100, (0.15, 1.0), (0.3, 3.3)) == (5, 7, 50, 50)
    assert rng.calls[1] == ("uniform", math.log(0.3), math.log(3.3))
    # fallback: the centred crop of the ratio clamped into (2, 3): w = 100, h = 50, top 25
    rng = Scripted(uniform=[1.0, math.log(3.0)] * 10)
    assert crop_box_torchvision(rng, 100, 100, (0.9, 1.0), (2.0, 3.0)) == (25, 0, 50, 100)


# --- applying an augmentation -------------------------------------------------------------------


def test_brightness_is_one_factor_rounded_once() -> None:
    frames = torch.tensor([[[[8, 100, 240]]], [[[0, 40, 255]]]], dtype=torch.uint8)  # [2, 1, 1, 3]
    out = apply_colour(frames, Augment(colour=(("brightness", 1.25),)))
    assert out.tolist() == [[[[10, 125, 255]]], [[[0, 50, 255]]]]  # min(255, 1.25 x)
    # several factors in a row are rounded once at the end: 1.25 then 0.8 gives the frames back
    both = apply_colour(frames, Augment(colour=(("brightness", 1.25), ("brightness", 0.8))))
    assert both.tolist() == [[[[8, 100, 204]]], [[[0, 40, 204]]]]  # 240, 255 were clipped at 1.0


def test_crop_and_rotation_by_hand() -> None:
    img = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4, 1).repeat(1, 1, 1, 3)
    cropped = apply_geometry(img, Augment(crop=(0.5, 0.5, 0.5, 0.5)), size=2)
    assert cropped[0, :, :, 0].tolist() == [[10, 11], [14, 15]]  # rows 2-3, columns 2-3
    square = torch.arange(9, dtype=torch.uint8).reshape(1, 3, 3, 1).repeat(1, 1, 1, 3)
    turned = apply_geometry(square, Augment(angle=90.0), size=3)
    # 90 degrees counter-clockwise: the top row becomes the left column, read upwards
    assert turned[0, :, :, 0].tolist() == [[2, 5, 8], [1, 4, 7], [0, 3, 6]]
    assert apply_geometry(img, Augment(), size=2) is img  # nothing to do


def test_draw_augment_ranges_order_and_clip_consistency() -> None:
    cfg = DataConfig.from_dict({"brightness": 0.5, "hue": 0.3, "rotation": 4.0, "crop_scale": [0.08, 1.0]})
    for seed in range(50):
        aug = draw_augment(cfg, np.random.default_rng(seed), 64, 64)
        factors = dict(aug.colour)
        assert set(factors) == {"brightness", "hue"}
        assert 0.5 <= factors["brightness"] <= 1.5 and -0.3 <= factors["hue"] <= 0.3
        assert -4.0 <= aug.angle <= 4.0
        top, left, h, w = aug.crop
        assert top >= 0 and left >= 0 and top + h <= 1 + 1e-9 and left + w <= 1 + 1e-9
    assert draw_augment(DataConfig.from_dict({}), np.random.default_rng(0), 64, 64) == Augment()
    # one draw per clip: two identical frames stay identical after the augmentation
    frames = np.random.default_rng(3).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8).repeat(2, 0)
    item = prepare_clip(frames, None, None, cfg, 24, None, np.random.default_rng(1), np.random.default_rng(2))
    assert item["frames"].shape == (2, 24, 24, 3) and torch.equal(item["frames"][0], item["frames"][1])


def test_geometry_reaches_the_rendered_levels_and_colour_does_not() -> None:
    """A parsing 'render' that is the frame itself: after the clip's crop and rotation the
    parsing images equal the frames (no colour change on them, the same box and angle)."""
    cfg = DataConfig.from_dict({"rotation": 10.0, "crop_scale": [0.3, 0.6], "brightness": 0.0})
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)

    def render_parsing(label_map: np.ndarray, size: int) -> np.ndarray:
        return frames[int(label_map[0, 0])]  # the map carries its frame's index

    maps = np.stack([np.full((40, 40), j, np.uint8) for j in range(3)])
    item = prepare_clip(frames, None, maps, cfg, 40, (None, render_parsing), np.random.default_rng(0),
                        np.random.default_rng(9))
    assert torch.equal(item["parsing"], item["frames"])
    assert not torch.equal(item["frames"], torch.from_numpy(frames))  # something did happen
    jittered = prepare_clip(frames, None, maps, DataConfig.from_dict({"brightness": 0.5}), 40,
                            (None, render_parsing), np.random.default_rng(0), np.random.default_rng(9))
    assert torch.equal(jittered["parsing"], torch.from_numpy(frames))  # colour: frames only
    assert not torch.equal(jittered["frames"], torch.from_numpy(frames))
