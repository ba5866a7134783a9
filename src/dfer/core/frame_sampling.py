"""Which frames of a clip a stage looks at: every frame-subsampling rule of the project.

Three rules, kept apart on purpose because each is already baked into artifacts and results:

* :func:`sample_indices` (decode): the centre of each of ``T`` equal segments of the ``N``
  source frames, ``index_k = floor((k + 0.5) * N / T)`` for ``k = 0 .. T-1``. It covers the
  whole clip (onset to apex to offset, which is what a dynamic expression needs), is
  symmetric, needs no randomness (train and test see the same frames; augmentation happens
  later), and for ``N < T`` the same formula repeats frames evenly (``N=3, T=6 -> 0 0 1 1 2 2``).
* :func:`spread_indices` (over frames already decoded: the caption stage's frames for the
  MLLM, the trainer's evaluation frames via :func:`uniform_indices`): the first and last frame
  and evenly spaced ones between, ``round(linspace(0, N - 1, T))``.
* :func:`jittered_indices` (training only, the ``data.temporal_jitter`` ablation): a random
  frame inside each of ``T`` equal segments.

Changing any of them would change the decoded shards, the captions or the evaluated frames, so
they stay separate functions with one home instead of one function with a mode (decode's
detection subset, too, is :func:`sample_indices`' segment centres).
"""

from __future__ import annotations

import numpy as np


def sample_indices(num_source_frames: int, num_frames: int) -> np.ndarray:
    """``num_frames`` indices (int32, non-decreasing) into a clip of ``num_source_frames``."""
    if num_source_frames < 1:
        raise ValueError(f"cannot sample from a clip with {num_source_frames} frames")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    k = np.arange(num_frames, dtype=np.int64)
    idx = ((2 * k + 1) * num_source_frames) // (2 * num_frames)  # exact integer arithmetic
    return idx.astype(np.int32)


def spread_indices(available: int, wanted: int) -> np.ndarray:
    """``wanted`` indices (int64) from ``0`` to ``available - 1``, evenly spaced and rounded
    half to even; indices repeat when ``wanted > available``."""
    return np.linspace(0, available - 1, wanted).round().astype(np.int64)


def uniform_indices(available: int, wanted: int | None) -> np.ndarray:
    """:func:`spread_indices`, but never more than ``available`` (all frames if None or more)."""
    if wanted is None or wanted >= available:
        return np.arange(available)
    return spread_indices(available, wanted)


def jittered_indices(available: int, wanted: int | None, rng: np.random.Generator) -> np.ndarray:
    """One random frame from each of ``wanted`` equal segments of ``available`` (TSN-style
    training sampling); all frames, in order, when there are not more than ``wanted``."""
    if wanted is None or wanted >= available:
        return np.arange(available)
    edges = np.floor(np.linspace(0, available, wanted + 1)).astype(np.int64)
    return rng.integers(edges[:-1], np.maximum(edges[1:], edges[:-1] + 1)).astype(np.int64)
