"""Bottleneck adapters: the only vision/text weights FineCLIPER trains.

All adapters end in a zero-initialised up-projection, so a freshly built model computes exactly
the frozen CLIP features: training starts from CLIP's zero-shot behaviour instead of from noise.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _zero_init(linear: nn.Linear) -> nn.Linear:
    nn.init.zeros_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class Bottleneck(nn.Module):
    """FC-down -> GELU -> FC-up, optionally with its own residual connection.

    ``skip=True`` is AIM's spatial adapter (placed on the attention output: identity at init);
    ``skip=False`` is the MLP-parallel adapter (adds nothing at init).
    """

    def __init__(self, dim: int, hidden: int, skip: bool) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.up = _zero_init(nn.Linear(hidden, dim))
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(F.gelu(self.down(x)))
        return x + h if self.skip else h


class TemporalAdapter(nn.Module):
    """Self-attention over the frame axis for every token position, in a bottleneck.

    Input is the frame-major token tensor ``[B*T, N, D]``; the returned delta has the same shape
    and is zero at init. A learned frame-position embedding tells the attention frame order.
    """

    def __init__(self, dim: int, hidden: int, heads: int, max_frames: int) -> None:
        super().__init__()
        heads = max(1, min(heads, hidden))
        while hidden % heads:
            heads -= 1
        self.down = nn.Linear(dim, hidden)
        self.frame_pos = nn.Parameter(torch.zeros(max_frames, hidden))
        nn.init.normal_(self.frame_pos, std=0.02)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.up = _zero_init(nn.Linear(hidden, dim))
        self.max_frames = max_frames

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bt, n, _ = x.shape
        if num_frames > self.max_frames:
            raise ValueError(f"{num_frames} frames exceed the temporal adapter's max_frames={self.max_frames}")
        b = bt // num_frames
        h = self.down(x)  # [B*T, N, r]
        r = h.shape[-1]
        h = h.view(b, num_frames, n, r).permute(0, 2, 1, 3).reshape(b * n, num_frames, r)
        h = h + self.frame_pos[:num_frames].to(h.dtype)
        h = self.attn(h, h, h, need_weights=False)[0]
        h = self.up(F.gelu(h))
        return h.view(b, n, num_frames, -1).permute(0, 2, 1, 3).reshape(bt, n, -1)


class BlockAdapters(nn.Module):
    """The adapters of one ViT block for one modality (any of them may be switched off).

    ``temporal``: ``aim`` puts a skip-less :class:`Bottleneck` after the frozen self-attention
    re-run along the frame axis (AIM's T-adapter); ``attention`` the trainable
    :class:`TemporalAdapter` (our ablation); ``none`` nothing. The attribute is ``temporal``
    either way, so state-dict keys name the block, not the design.
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        spatial: bool,
        mlp: bool,
        temporal: str,
        temporal_heads: int,
        max_frames: int,
    ) -> None:
        super().__init__()
        self.spatial = Bottleneck(dim, hidden, skip=True) if spatial else None
        self.mlp = Bottleneck(dim, hidden, skip=False) if mlp else None
        self.temporal_kind = temporal
        self.temporal: nn.Module | None
        if temporal == "aim":
            self.temporal = Bottleneck(dim, hidden, skip=False)
        elif temporal == "attention":
            self.temporal = TemporalAdapter(dim, hidden, temporal_heads, max_frames)
        elif temporal == "none":
            self.temporal = None
        else:
            raise ValueError(f"unknown temporal adaptation {temporal!r}; expected aim, attention or none")


class TextAdapter(Bottleneck):
    """Residual bottleneck on (frozen) text-encoder output features: identity at init.

    The ``text_adapter: output`` ablation; the paper's adapters sit inside the text
    transformer (:class:`TextAdapterStack`).
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(dim, hidden, skip=True)


class TextAdapterStack(nn.Module):
    """One bottleneck per block of the frozen text transformer (Fig. 2's PN / caption adapters).

    ``position="attn"``: on the self-attention output with its own skip (identity at init);
    ``"mlp"``: parallel to the MLP, scaled by s (adds nothing at init).
    """

    def __init__(self, width: int, layers: int, hidden: int, position: str) -> None:
        super().__init__()
        if position not in ("attn", "mlp"):
            raise ValueError(f"unknown text adapter position {position!r}; expected attn or mlp")
        self.position = position
        self.blocks = nn.ModuleList(Bottleneck(width, hidden, skip=position == "attn") for _ in range(layers))
