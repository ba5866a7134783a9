"""Run open_clip's frozen ViT with one modality's adapters inserted into every block.

The frozen tower is shared by all visual modalities (frames, parsing maps, landmark images);
each modality brings its own :class:`AdapterStack`. Block arithmetic, AIM (Yang et al., ICLR
2023) as FineCLIPER uses it; tokens are frame-major ``[B*T, N, D]``::

    x = x + T(attn(ln_1(x^T)))^T                # temporal: the frozen attention run over the T
                                                # frames of each token position (x^T), then a
                                                # skip-less adapter (temporal: aim)
    x = x + ls_1(S(attn(ln_1(x))))              # spatial adapter on the attention output
    x = x + ls_2(mlp(ln_2(x))) + s * M(ln_2(x)) # joint adapter parallel to the MLP, scale s

With ``temporal: aim`` a zero-initialised temporal embedding (one vector per frame index) is
added to the tokens before ``ln_pre``, as in AIM. ``temporal: attention`` replaces the first
line by ``x = x + T(ln_1(x), T)`` with our own trainable attention module (an ablation).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dfer.model.adapters import BlockAdapters


class AdapterStack(nn.Module):
    """One :class:`BlockAdapters` per ViT block, plus AIM's temporal embedding when used."""

    def __init__(
        self,
        width: int,
        layers: int,
        ratio: float,
        spatial: bool,
        mlp: bool,
        temporal: str,
        temporal_heads: int,
        max_frames: int,
    ) -> None:
        super().__init__()
        hidden = max(1, round(width * ratio))
        self.temporal = temporal
        self.max_frames = max_frames
        self.blocks = nn.ModuleList(
            BlockAdapters(width, hidden, spatial, mlp, temporal, temporal_heads, max_frames)
            for _ in range(layers)
        )
        # zero at init (AIM): frame order enters without moving step 0 off frozen CLIP
        self.temporal_embedding = (
            nn.Parameter(torch.zeros(max_frames, width)) if temporal == "aim" else None
        )


def _aim_temporal(blk: nn.Module, x: torch.Tensor, adapter: nn.Module, num_frames: int) -> torch.Tensor:
    """AIM's temporal branch: the block's frozen attention over frames, then the T-adapter."""
    bt, n, d = x.shape
    b = bt // num_frames
    xt = x.view(b, num_frames, n, d).transpose(1, 2).reshape(b * n, num_frames, d)
    xt = adapter(blk.attention(q_x=blk.ln_1(xt)))
    return xt.view(b, n, num_frames, d).transpose(1, 2).reshape(bt, n, d)


def _block_forward(
    blk: nn.Module, x: torch.Tensor, ad: BlockAdapters | None, num_frames: int, scale: float
) -> torch.Tensor:
    if ad is not None and ad.temporal is not None:
        if ad.temporal_kind == "aim":
            x = x + _aim_temporal(blk, x, ad.temporal, num_frames)
        else:
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


def _embeds(visual: nn.Module, images: torch.Tensor, num_frames: int, adapters: AdapterStack | None) -> torch.Tensor:
    """open_clip's patch + class + position embedding and ``ln_pre``, with AIM's temporal
    embedding added before ``ln_pre`` (where AIM adds it) when the stack has one."""
    if adapters is None or adapters.temporal_embedding is None:
        return visual._embeds(images)
    if num_frames > adapters.max_frames:
        raise ValueError(f"{num_frames} frames exceed model.max_frames={adapters.max_frames}")
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [B*T, grid**2, width]
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    bt, n, d = x.shape
    temb = adapters.temporal_embedding[:num_frames].to(x.dtype)
    x = (x.view(bt // num_frames, num_frames, n, d) + temb[None, :, None, :]).view(bt, n, d)
    x = visual.patch_dropout(x)
    return visual.ln_pre(x)


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
    if images.shape[0] % num_frames:
        raise ValueError(f"{images.shape[0]} images are not a whole number of {num_frames}-frame clips")
    x = _embeds(visual, images, num_frames, adapters)
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
