"""Frames as the data pipeline delivers them -> image batches a backbone takes.

Every method receives the same decoded frames, uint8 (or 0..255 float) ``[B, T, H, W, 3]``;
what differs is the normalisation (CLIP mean/std for FineCLIPER and CLIPER, plain ``/ 255`` for
DFER-CLIP, ImageNet mean/std for S2D), which each method applies to this function's output.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def frames_to_images(frames: torch.Tensor, size: int | None) -> torch.Tensor:
    """``[B, T, H, W, 3]`` 0..255 -> float ``[B*T, 3, S, S]`` still on the 0..255 scale.

    Resized (bilinear, antialiased) to ``size`` x ``size`` when the frames have another size;
    ``size=None`` keeps them as they are.
    """
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"expected images [B, T, H, W, 3], got {tuple(frames.shape)}")
    b, t, h, w, _ = frames.shape
    x = frames.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float()
    if size is not None and (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x
