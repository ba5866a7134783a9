"""Which stored frames a clip shows the model, and how a training clip is augmented, per method.

Every method reads the same decoded frames (``decode.num_frames`` per clip, already sampled
from the source video as segment centres, :func:`dfer.core.frame_sampling.sample_indices`); what
differs is how ``data.num_frames`` of them are picked for training and for testing, and how a
training clip is augmented. Each is a key of the run's ``data`` block whose default is the
method's (:attr:`dfer.methods.registry.MethodSpec.data`).

Frame samplers (``data.train_sampler`` / ``data.test_sampler``), for ``N`` stored and ``T``
wanted frames:

- ``uniform``: the first, the last and evenly spaced ones between,
  ``round(linspace(0, N-1, T))``; every frame when ``N <= T`` (FineCLIPER, train and test);
- ``jitter``: a random frame in each of ``T`` segments with edges ``floor(linspace(0, N, T+1))``;
  every frame when ``N <= T`` (FineCLIPER's ``data.temporal_jitter`` ablation);
- ``segment_random``: DFER-CLIP's training rule (public ``video_dataloader.py:48-59``):
  segments of ``a = N // T`` frames from the start (the last ``N - T*a`` frames are never
  drawn), frame ``k*a + randint(a)`` of segment ``k``; for ``N < T`` the frames in order, the
  last one repeated to ``T``;
- ``segment_centre``: DFER-CLIP's test rule (``:61-70``): ``floor((k + 0.5) * N / T)`` for
  ``N > T``, else as ``segment_random``'s short-clip rule;
- ``window_random`` / ``window_centre``: ``T`` consecutive frames from a random / the centred
  start (S2D's 16 consecutive frames; for issue 27's S2D integration, which needs a dense
  decode); ``N < T``: the frames in order, the last one repeated.

Augmentations (training only; ``data`` keys, all off by default = FineCLIPER's flip only), drawn
once per clip from ``[seed, epoch, clip, AUGMENT_STREAM]`` and applied to every frame of the
clip alike (the public video loaders' "group" transforms):

- ``brightness`` / ``contrast`` / ``saturation`` / ``hue``: torchvision's ``ColorJitter``
  ranges (factor uniform in ``[max(0, 1-b), 1+b]``, hue shift uniform in ``[-h, h]``), applied
  in a random order as ``ColorJitter`` does; the face frames only (DFER-CLIP DFEW: brightness
  0.5; CLIPER: brightness 0.4, hue 0.3);
- ``rotation``: degrees, uniform in ``[-r, r]``, nearest neighbour, black fill, about the
  centre (DFER-CLIP FERV39k: 4);
- ``crop_scale`` / ``crop_ratio`` / ``crop_rule``: a random resized crop, the crop's area a
  uniform share ``crop_scale`` of the frame's and its aspect ratio in ``crop_ratio``, resized to
  the model's input size. ``crop_rule: group`` is DFER-CLIP's ``GroupRandomSizedCrop``
  (uniform ratio, width and height swapped with probability 1/2, 10 tries, else the whole
  frame); ``torchvision`` is ``RandomResizedCrop.get_params`` (log-uniform ratio, 10 tries,
  else the centred crop of the clamped ratio: CLIPER's);
- ``flip``: the horizontal flip (:class:`dfer.train.data.ClipDataset`, which mirrors landmark
  points and parsing labels before rendering, so the middle level keeps its anatomy).

The geometric ones (rotation, crop) are drawn in fractions of the frame and applied to every
visual level the model reads at that level's own resolution, so rendered landmark and parsing
images stay aligned with the face; the photometric ones touch the face frames only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dfer.core.frame_sampling import jittered_indices, sample_indices, uniform_indices

#: frame samplers a ``data`` block may name
SAMPLERS = ("uniform", "jitter", "segment_random", "segment_centre", "window_random", "window_centre")
#: samplers that draw at random (training only: a test sampler must be deterministic)
RANDOM_SAMPLERS = ("jitter", "segment_random", "window_random")
#: random resized crop rules
CROP_RULES = ("group", "torchvision")
#: test-time views: ``identity`` (the clip as sampled) and ``hflip`` (mirrored); the
#: probabilities of the views are averaged
TEST_VIEWS = ("identity", "hflip")
#: the last word of a clip's augmentation seed key ``[seed, epoch, clip, AUGMENT_STREAM]``
#: (flips use ``[seed, epoch, clip]``, jitter ``[..., 1]``, the shuffle ``[..., 0, 2]``)
AUGMENT_STREAM = 3


def _pad_edge(available: int, wanted: int) -> np.ndarray:
    """``0 .. N-1`` then the last frame repeated up to ``wanted`` (the public short-clip rule)."""
    idx = np.arange(min(available, wanted), dtype=np.int64)
    return np.concatenate([idx, np.full(wanted - len(idx), available - 1, dtype=np.int64)])


def frame_indices(sampler: str, available: int, wanted: int | None,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices (int64) of the ``wanted`` frames of ``available`` stored ones ``sampler`` picks
    (see the module docstring); ``wanted`` None: every stored frame."""
    if available < 1:
        raise ValueError(f"cannot sample frames from a clip with {available} frames")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown frame sampler {sampler!r}; expected one of {list(SAMPLERS)}")
    if sampler in RANDOM_SAMPLERS and rng is None:
        raise ValueError(f"frame sampler {sampler!r} draws at random and needs a generator")
    if wanted is None:
        return np.arange(available, dtype=np.int64)
    if sampler == "uniform":
        return uniform_indices(available, wanted).astype(np.int64)
    if sampler == "jitter":
        assert rng is not None
        return jittered_indices(available, wanted, rng).astype(np.int64)
    if sampler in ("segment_random", "segment_centre"):
        if available < wanted or (sampler == "segment_centre" and available == wanted):
            return _pad_edge(available, wanted)
        if sampler == "segment_centre":
            return sample_indices(available, wanted).astype(np.int64)
        assert rng is not None
        length = available // wanted
        return np.arange(wanted, dtype=np.int64) * length + rng.integers(0, length, size=wanted)
    # windows of consecutive frames
    if available <= wanted:
        return _pad_edge(available, wanted)
    if sampler == "window_centre":
        start = (available - wanted) // 2
    else:
        assert rng is not None
        start = int(rng.integers(0, available - wanted + 1))
    return np.arange(start, start + wanted, dtype=np.int64)


@dataclass(frozen=True)
class Augment:
    """The augmentation of one clip: colour factors (None: not applied) in the order applied,
    a rotation angle in degrees and a crop box in fractions of the frame ``(top, left, height,
    width)`` (None: none)."""

    colour: tuple[tuple[str, float], ...] = ()
    angle: float = 0.0
    crop: tuple[float, float, float, float] | None = None

    @property
    def geometric(self) -> bool:
        return self.angle != 0.0 or self.crop is not None

    @property
    def any(self) -> bool:
        return bool(self.colour) or self.geometric


def draw_augment(cfg: object, rng: np.random.Generator, height: int, width: int) -> Augment:
    """One clip's :class:`Augment` from the ``data`` block ``cfg`` (its augmentation keys),
    drawn with ``rng`` for frames of ``height`` x ``width`` pixels. Draw order: colour factors,
    their order, the angle, the crop (each only when its key is on)."""
    colour: list[tuple[str, float]] = []
    for name in ("brightness", "contrast", "saturation"):
        amount = float(getattr(cfg, name, 0.0) or 0.0)
        if amount > 0:
            colour.append((name, float(rng.uniform(max(0.0, 1.0 - amount), 1.0 + amount))))
    hue = float(getattr(cfg, "hue", 0.0) or 0.0)
    if hue > 0:
        colour.append(("hue", float(rng.uniform(-hue, hue))))
    if len(colour) > 1:
        colour = [colour[i] for i in rng.permutation(len(colour))]
    degrees = float(getattr(cfg, "rotation", 0.0) or 0.0)
    angle = float(rng.uniform(-degrees, degrees)) if degrees > 0 else 0.0
    scale = getattr(cfg, "crop_scale", None)
    crop = None
    if scale is not None:
        ratio = tuple(getattr(cfg, "crop_ratio", (3 / 4, 4 / 3)))
        rule = getattr(cfg, "crop_rule", "group")
        top, left, h, w = (crop_box_group if rule == "group" else crop_box_torchvision)(
            rng, height, width, (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1])))
        crop = (top / height, left / width, h / height, w / width)
    return Augment(tuple(colour), angle, crop)


def crop_box_group(rng: np.random.Generator, height: int, width: int, scale: tuple[float, float],
                   ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of DFER-CLIP's ``GroupRandomSizedCrop`` (public
    ``video_transform.py:231-264``): area uniform in ``scale`` x the frame's, aspect ratio
    uniform in ``ratio``, sides rounded, swapped with probability 1/2, 10 tries; else the whole
    frame (the public fallback scales the shorter side to the output size and crops it there,
    which for the square face crops dfer stores is the whole frame)."""
    area = height * width
    for _ in range(10):
        target = rng.uniform(scale[0], scale[1]) * area
        aspect = rng.uniform(ratio[0], ratio[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if rng.random() < 0.5:
            w, h = h, w
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return top, left, h, w
    return 0, 0, height, width


def crop_box_torchvision(rng: np.random.Generator, height: int, width: int, scale: tuple[float, float],
                         ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of torchvision's ``RandomResizedCrop.get_params`` (CLIPER's static
    script): area uniform in ``scale``, log-ratio uniform, 10 tries; else the centred crop
    whose ratio is clamped to ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> float ``[T, 3, H, W]`` in [0, 1]."""
    return images.permute(0, 3, 1, 2).float() / 255.0


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float ``[T, 3, H, W]`` in [0, 1] -> uint8 ``[T, H, W, 3]``, rounded once at the end."""
    return (images * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def apply_colour(images: torch.Tensor, aug: Augment) -> torch.Tensor:
    """The colour factors of ``aug`` on uint8 ``[T, H, W, 3]`` frames (torchvision's kernels on
    floats, one rounding at the end)."""
    if not aug.colour:
        return images
    from torchvision.transforms.v2 import functional as TF

    x = _to_float(images)
    ops = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast,
           "saturation": TF.adjust_saturation, "hue": TF.adjust_hue}
    for name, factor in aug.colour:
        x = ops[name](x, factor)
    return _to_uint8(x)


def apply_geometry(images: torch.Tensor, aug: Augment, size: int) -> torch.Tensor:
    """Rotation, then the crop resized to ``size`` x ``size`` (bilinear, antialiased), of uint8
    ``[T, H, W, 3]`` images; without a crop the images keep their size."""
    if not aug.geometric:
        return images
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    h, w = int(images.shape[1]), int(images.shape[2])
    x = images.permute(0, 3, 1, 2)
    if aug.angle != 0.0:
        x = TF.rotate(x, aug.angle, interpolation=InterpolationMode.NEAREST, fill=0)
    if aug.crop is not None:
        top, left, ch, cw = aug.crop
        box = (int(round(top * h)), int(round(left * w)), max(1, int(round(ch * h))), max(1, int(round(cw * w))))
        x = TF.resized_crop(x.float(), *box, size=[size, size], interpolation=InterpolationMode.BILINEAR,
                            antialias=True).round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous()
