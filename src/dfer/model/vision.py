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

Two ways to run it (``model.batch_levels``):

* :func:`encode_frames` (``batch_levels: false``, the first implementation): one level at a
  time, the frozen attention through open_clip's ``nn.MultiheadAttention``.
* :func:`encode_streams` (``batch_levels: true``, default): every enabled visual level in one
  forward. The levels' tokens are concatenated along the batch axis, so each frozen matmul
  (attention projections, MLP) runs once over all levels; each level's adapters are applied to
  its own slice. The frozen attention is computed with one ``in_proj`` matmul and
  ``scaled_dot_product_attention`` on strided views (no head re-layout copies), and with CLS
  pooling the last block computes only the CLS token (its attention still reads every token's
  keys and values): the other tokens' last-block outputs are never pooled. The result is the
  same as :func:`encode_frames` up to float rounding (``tests/test_model.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
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


#: The frozen self-attention of a block on ``ln_1``-normed tokens ``[B, L, D]``.
Attend = Callable[[torch.Tensor], torch.Tensor]


def _aim_temporal(blk: nn.Module, x: torch.Tensor, adapter: nn.Module, num_frames: int,
                  attend: Attend) -> torch.Tensor:
    """AIM's temporal branch: the block's frozen attention over frames, then the T-adapter."""
    bt, n, d = x.shape
    b = bt // num_frames
    xt = x.view(b, num_frames, n, d).transpose(1, 2).reshape(b * n, num_frames, d)
    xt = adapter(attend(blk.ln_1(xt)))
    return xt.view(b, n, num_frames, d).transpose(1, 2).reshape(bt, n, d)


def _with_temporal(blk: nn.Module, x: torch.Tensor, ad: BlockAdapters | None, num_frames: int,
                   attend: Attend) -> torch.Tensor:
    """``x`` plus the block's temporal branch when its adapters have one (AIM's, or our
    attention ablation), else ``x``."""
    if ad is None or ad.temporal is None:
        return x
    if ad.temporal_kind == "aim":
        return x + _aim_temporal(blk, x, ad.temporal, num_frames, attend)
    return x + ad.temporal(blk.ln_1(x), num_frames)


def _block_forward(
    blk: nn.Module, x: torch.Tensor, ad: BlockAdapters | None, num_frames: int, scale: float
) -> torch.Tensor:
    x = _with_temporal(blk, x, ad, num_frames, lambda y: blk.attention(q_x=y))
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
    _check_clips(images, num_frames)
    x = _embeds(visual, images, num_frames, adapters)
    blocks = visual.transformer.resblocks
    for i, blk in enumerate(blocks):
        ad = adapters.blocks[i] if adapters is not None else None
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(_block_forward, blk, x, ad, num_frames, scale, use_reentrant=False)
        else:
            x = _block_forward(blk, x, ad, num_frames, scale)
    return _pooled(visual, x)


def _check_clips(images: torch.Tensor, num_frames: int) -> None:
    if images.shape[0] % num_frames:
        raise ValueError(f"{images.shape[0]} images are not a whole number of {num_frames}-frame clips")


def _pooled(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The image embedding of the last block's tokens: open_clip's pooling, then projection."""
    pooled, _tokens = visual._pool(x)
    return pooled @ visual.proj if visual.proj is not None else pooled


# --------------------------------------------------------------------------- batched levels


@dataclass
class Stream:
    """One visual level for :func:`encode_streams`: normalised images ``[B*T, 3, H, W]``."""

    images: torch.Tensor
    num_frames: int
    adapters: AdapterStack | None


#: (start, end, that stream's adapters of this block, frames per clip) per stream
_Segment = tuple[int, int, BlockAdapters | None, int]


def _plain_mha(blk: nn.Module) -> nn.MultiheadAttention | None:
    """The block's ``nn.MultiheadAttention`` when :func:`_attention` computes it exactly
    (packed in-projection, batch-first, no masks / extra keys / dropout), else None."""
    attn = getattr(blk, "attn", None)
    if (
        type(attn) is not nn.MultiheadAttention
        or not attn.batch_first
        or not attn._qkv_same_embed_dim
        or attn.in_proj_weight is None
        or attn.bias_k is not None
        or attn.add_zero_attn
        or (attn.dropout and attn.training)
        or hasattr(blk, "ln_1_kv")
    ):
        return None
    return attn


def _attention(blk: nn.Module, x: torch.Tensor, cls_only: bool = False) -> torch.Tensor:
    """The block's frozen self-attention of ``x`` ``[B, L, D]`` (already ``ln_1``-normed).

    ``cls_only``: only the first token's output ``[B, 1, D]`` (queries of the CLS token, keys
    and values of every token). Falls back on open_clip's own ``attention`` when the module is
    not a plain ``nn.MultiheadAttention``.
    """
    attn = _plain_mha(blk)
    if attn is None:
        out = blk.attention(q_x=x)
        return out[:, :1] if cls_only else out
    b, n, d = x.shape
    heads = attn.num_heads
    w, bias = attn.in_proj_weight, attn.in_proj_bias
    if cls_only:
        q = F.linear(x[:, :1], w[:d], None if bias is None else bias[:d])
        kv = F.linear(x, w[d:], None if bias is None else bias[d:]).view(b, n, 2, heads, d // heads)
        q = q.view(b, 1, heads, d // heads).transpose(1, 2)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        n_q = 1
    else:
        qkv = F.linear(x, w, bias).view(b, n, 3, heads, d // heads)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # [B, H, L, d/H] views
        n_q = n
    out = F.scaled_dot_product_attention(q, k, v)  # [B, H, Lq, d/H]
    out = out.transpose(1, 2).reshape(b, n_q, d)
    return attn.out_proj(out)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _per_stream(
    x: torch.Tensor, segs: Sequence[_Segment], fn: Callable[[torch.Tensor, BlockAdapters], torch.Tensor | None]
) -> torch.Tensor:
    """``x`` with ``fn(slice, adapters)`` in place of each stream's slice (where not None)."""
    outs = [fn(x[s:e], ad) if ad is not None else None for s, e, ad, _ in segs]
    if all(o is None for o in outs):
        return x
    return _cat([x[s:e] if o is None else o for (s, e, _, _), o in zip(segs, outs, strict=True)])


def _batched_block_forward(
    blk: nn.Module, x: torch.Tensor, segs: Sequence[_Segment], scale: float, cls_only: bool
) -> torch.Tensor:
    """:func:`_block_forward` over several streams concatenated along the batch axis; with
    ``cls_only`` only the CLS token's output ``[N, 1, D]`` (the last block under CLS pooling)."""
    if any(ad is not None and ad.temporal is not None for _, _, ad, _ in segs):
        x = _cat([_with_temporal(blk, x[s:e], ad, t, lambda y: _attention(blk, y))
                  for s, e, ad, t in segs])
    a = _attention(blk, blk.ln_1(x), cls_only)
    if cls_only:
        x = x[:, :1]
    a = _per_stream(a, segs, lambda sl, ad: ad.spatial(sl) if ad.spatial is not None else None)
    x = x + blk.ls_1(a)
    h = blk.ln_2(x)
    m = blk.ls_2(blk.mlp(h))
    if any(ad is not None and ad.mlp is not None for _, _, ad, _ in segs):
        m = _cat([m[s:e] + scale * ad.mlp(h[s:e]) if ad is not None and ad.mlp is not None else m[s:e]
                  for s, e, ad, _ in segs])
    return x + m


def _cls_pool(visual: nn.Module) -> bool:
    """Whether ``visual`` pools the CLS token alone (so the last block may skip the others)."""
    return getattr(visual, "attn_pool", None) is None and getattr(visual, "pool_type", None) == "tok"


def encode_streams(
    visual: nn.Module,
    streams: Sequence[Stream],
    scale: float,
    grad_checkpointing: bool = False,
) -> list[torch.Tensor]:
    """Per-image embeddings ``[B*T, E]`` of every stream, all streams in one batched forward
    through the frozen blocks (each with its own adapters); equal to :func:`encode_frames`
    per stream up to float rounding."""
    xs, segs, start = [], [], 0
    for st in streams:
        _check_clips(st.images, st.num_frames)
        xs.append(_embeds(visual, st.images, st.num_frames, st.adapters))
        segs.append((start, start + st.images.shape[0], st.adapters, st.num_frames))
        start += st.images.shape[0]
    if len({x.shape[1:] for x in xs}) > 1:
        raise ValueError("batched visual levels need the same image size (token count) for every level")
    x = _cat(xs)
    blocks = visual.transformer.resblocks
    last_cls_only = _cls_pool(visual)
    for i, blk in enumerate(blocks):
        block_segs = [(s, e, stack.blocks[i] if stack is not None else None, t) for s, e, stack, t in segs]
        cls_only = last_cls_only and i == len(blocks) - 1
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(_batched_block_forward, blk, x, block_segs, scale, cls_only, use_reentrant=False)
        else:
            x = _batched_block_forward(blk, x, block_segs, scale, cls_only)
    pooled = _pooled(visual, x)
    return [pooled[s:e] for s, e, _, _ in segs]
