"""Run open_clip's frozen ViT with one modality's adapters inserted into every block.

The frozen tower is shared by all visual modalities (frames, parsing maps, landmark images);
each modality brings its own :class:`AdapterStack`. Block arithmetic, AIM style::

    x = x + T(ln_1(x))                         # temporal adapter (optional)
    x = x + ls_1(S(attn(ln_1(x))))             # spatial adapter on the attention output
    x = x + ls_2(mlp(ln_2(x))) + s * M(ln_2(x))  # MLP-parallel adapter, scale s
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dfer.model.adapters import BlockAdapters


class AdapterStack(nn.Module):
    """One :class:`BlockAdapters` per ViT block."""

    def __init__(
        self,
        width: int,
        layers: int,
        ratio: float,
        spatial: bool,
        mlp: bool,
        temporal: bool,
        temporal_heads: int,
        max_frames: int,
    ) -> None:
        super().__init__()
        hidden = max(1, round(width * ratio))
        self.blocks = nn.ModuleList(
            BlockAdapters(width, hidden, spatial, mlp, temporal, temporal_heads, max_frames)
            for _ in range(layers)
        )


def _block_forward(
    blk: nn.Module, x: torch.Tensor, ad: BlockAdapters | None, num_frames: int, scale: float
) -> torch.Tensor:
    if ad is not None and ad.temporal is not None:
        x = x + ad.temporal(blk.ln_1(x), num_frames)
    a = blk.attention(q_x=blk.ln_1(x))
    if ad is not None and ad.spatial is not None:
        a = ad.spatial(a)
    x = x + blk.ls_1(a)
    h = blk.ln_2(x)
    m = blk.ls_2(blk.mlp(h))
    if ad is not None and ad.mlp is not None:
        m = m + scale * ad.mlp(h)
    return x + m


def encode_frames(
    visual: nn.Module,
    images: torch.Tensor,
    num_frames: int,
    adapters: AdapterStack | None,
    scale: float,
    grad_checkpointing: bool = False,
) -> torch.Tensor:
    """Per-image embeddings ``[B*T, E]`` of normalised images ``[B*T, 3, H, W]``.

    With ``adapters=None`` (or all adapters at their zero init) this equals
    ``visual(images)``, the frozen CLIP image features.
    """
    x = visual._embeds(images)
    blocks = visual.transformer.resblocks
    for i, blk in enumerate(blocks):
        ad = adapters.blocks[i] if adapters is not None else None
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(_block_forward, blk, x, ad, num_frames, scale, use_reentrant=False)
        else:
            x = _block_forward(blk, x, ad, num_frames, scale)
    pooled, _tokens = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return pooled
