"""Run open_clip's frozen text transformer with one adapter set inside its blocks.

Fig. 2 of the paper puts the Positive and Negative adapters (and the caption branch's adapter)
*within* the text encoder, as the video adapters sit within the ViT. Each block gets one
bottleneck (:class:`dfer.model.adapters.TextAdapterStack`)::

    position attn:  x = x + ls_1(A(attn(ln_1(x))));  x = x + ls_2(mlp(ln_2(x)))
    position mlp:   x = x + ls_1(attn(ln_1(x)));     x = x + ls_2(mlp(ln_2(x))) + s * A(ln_2(x))

Sequences are cut after the last end-of-text token of the batch: with CLIP's causal mask and
arg-max pooling, tokens after a sequence's EOT never reach its pooled feature, so the cut is
exact (the identity test compares with ``encode_text``) and makes the short PN descriptors
(about 12 of 77 positions) several times cheaper to run with gradients every step.
"""

from __future__ import annotations

import torch
from torch import nn

from dfer.model.adapters import TextAdapterStack


def check_text_supported(clip: nn.Module) -> None:
    """The in-encoder adapters need open_clip's built-in CLIP text tower (not HF towers)."""
    from open_clip.transformer import ResidualAttentionBlock

    blocks = getattr(getattr(clip, "transformer", None), "resblocks", None)
    if blocks is None or not hasattr(clip, "token_embedding"):
        raise ValueError(
            f"model.text_adapter: inner needs open_clip's built-in CLIP text transformer; "
            f"{type(clip).__name__} has none (use text_adapter: output)"
        )
    for blk in blocks:
        if type(blk) is not ResidualAttentionBlock:
            raise ValueError(f"unsupported text block {type(blk).__name__} for model.text_adapter: inner")


def text_width_layers(clip: nn.Module) -> tuple[int, int]:
    """Width and depth of the text transformer."""
    return int(clip.transformer.width), len(clip.transformer.resblocks)


def _used_length(clip: nn.Module, tokens: torch.Tensor) -> int:
    """Positions that can influence the pooled features (all unless the cut is exact)."""
    if getattr(clip, "attn_mask", None) is None or getattr(clip, "text_pool_type", "argmax") != "argmax":
        return tokens.shape[1]
    return int(tokens.argmax(dim=-1).max().item()) + 1


def encode_text(
    clip: nn.Module, tokens: torch.Tensor, adapters: TextAdapterStack | None, scale: float
) -> torch.Tensor:
    """Text embeddings ``[B, E]`` (unnormalised, like ``clip.encode_text``) with ``adapters``
    inside the blocks; ``adapters=None`` or a zero-initialised stack gives ``encode_text``."""
    from open_clip.transformer import text_global_pool

    n = _used_length(clip, tokens)
    tokens = tokens[:, :n]
    cast = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens).to(cast) + clip.positional_embedding[:n].to(cast)
    mask = clip.attn_mask[:n, :n] if clip.attn_mask is not None else None
    for i, blk in enumerate(clip.transformer.resblocks):
        ad = adapters.blocks[i] if adapters is not None else None
        a = blk.attention(q_x=blk.ln_1(x), attn_mask=mask)
        if ad is not None and adapters.position == "attn":
            a = ad(a)
        x = x + blk.ls_1(a)
        h = blk.ln_2(x)
        m = blk.ls_2(blk.mlp(h))
        if ad is not None and adapters.position == "mlp":
            m = m + scale * ad(h)
        x = x + m
    x = clip.ln_final(x)
    x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
    if clip.text_projection is not None:
        x = clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection
    return x
