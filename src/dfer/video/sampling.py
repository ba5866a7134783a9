"""Which source frames a clip contributes: uniform sampling of T frame indices.

Rule: split the clip's ``N`` frames into ``T`` equal segments and take the frame at the centre
of each, ``index_k = floor((k + 0.5) * N / T)`` for ``k = 0 .. T-1``. It covers the whole clip
(onset to apex to offset, which is what a dynamic expression needs), is symmetric, needs no
randomness (train and test see the same frames; augmentation happens later), and for
``N < T`` the same formula repeats frames evenly (``N=3, T=6 -> 0 0 1 1 2 2``).
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
