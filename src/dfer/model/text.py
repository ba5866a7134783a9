"""Run open_clip's frozen text transformer, from token ids or from token embeddings.

Fig. 2 of the paper puts the Positive and Negative adapters (and the caption branch's adapter)
*within* the text encoder, as the video adapters sit within the ViT. Each block gets one
bottleneck (:class:`dfer.model.adapters.TextAdapterStack`)::

    position attn:  x = x + ls_1(A(attn(ln_1(x))));  x = x + ls_2(mlp(ln_2(x)))
    position mlp:   x = x + ls_1(attn(ln_1(x)));     x = x + ls_2(mlp(ln_2(x))) + s * A(ln_2(x))

Sequences are cut after the last end-of-text token of the batch: with CLIP's causal mask and
arg-max pooling, tokens after a sequence's EOT never reach its pooled feature, so the cut is
exact (the identity test compares with ``encode_text``) and makes the short PN descriptors
(about 12 of 77 positions) several times cheaper to run with gradients every step.

Two entry points share the block loop: :func:`encode_text` takes token ids (FineCLIPER's
descriptors and captions), :func:`encode_text_embeddings` takes token embeddings plus the
end-of-text positions (prompt learners, whose learnable rows have no token id).
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


def _run_blocks(
    clip: nn.Module, x: torch.Tensor, adapters: TextAdapterStack | None, scale: float
) -> torch.Tensor:
    """Positional embedding, the text blocks (with ``adapters`` inside) and ``ln_final`` on
    input embeddings ``x`` ``[N, L, D]``: the part both entry points share."""
    n = x.shape[1]
    if n > clip.positional_embedding.shape[0]:
        raise ValueError(
            f"text sequence of {n} positions exceeds the text tower's context length "
            f"{clip.positional_embedding.shape[0]}"
        )
    cast = clip.transformer.get_cast_dtype()
    x = x.to(cast) + clip.positional_embedding[:n].to(cast)
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
    return clip.ln_final(x)


def _project(clip: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
    """The text projection of pooled features (a matrix or an ``nn.Linear``), if any."""
    proj = clip.text_projection
    if proj is None:
        return pooled
    return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj


def encode_text(
    clip: nn.Module, tokens: torch.Tensor, adapters: TextAdapterStack | None, scale: float
) -> torch.Tensor:
    """Text embeddings ``[B, E]`` (unnormalised, like ``clip.encode_text``) with ``adapters``
    inside the blocks; ``adapters=None`` or a zero-initialised stack gives ``encode_text``."""
    from open_clip.transformer import text_global_pool

    n = _used_length(clip, tokens)
    tokens = tokens[:, :n]
    x = _run_blocks(clip, clip.token_embedding(tokens), adapters, scale)
    x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
    return _project(clip, x)


def encode_text_embeddings(
    clip: nn.Module,
    embeddings: torch.Tensor,
    eot: torch.Tensor,
    adapters: TextAdapterStack | None = None,
    scale: float = 0.0,
) -> torch.Tensor:
    """Text embeddings ``[N, E]`` of token EMBEDDINGS ``[N, L, D]`` read at positions ``eot`` ``[N]``.

    The entry point of prompt learners (DFER-CLIP's class contexts, CLIPER's learnable
    descriptors), which replace some rows of ``clip.token_embedding(tokens)`` by parameters, so
    there are no token ids to pool by: the caller gives each sequence's end-of-text position
    (``tokens.argmax(-1)`` of the template it started from). Same blocks, adapters and
    projection as :func:`encode_text`; ``embeddings = clip.token_embedding(tokens)`` with
    ``eot = tokens.argmax(-1)`` gives ``clip.encode_text(tokens)``. Under the causal mask the
    sequences are cut after the last ``eot`` (positions after a sequence's EOT cannot reach
    its pooled row), as :func:`encode_text` does.
    """
    if embeddings.ndim != 3:
        raise ValueError(f"expected token embeddings [N, L, D], got {tuple(embeddings.shape)}")
    eot = eot.to(device=embeddings.device, dtype=torch.long)
    if eot.shape != embeddings.shape[:1]:
        raise ValueError(f"expected one EOT position per sequence ({embeddings.shape[0]}), got {tuple(eot.shape)}")
    if eot.numel() and (int(eot.min()) < 0 or int(eot.max()) >= embeddings.shape[1]):
        raise ValueError(f"EOT positions must lie in [0, {embeddings.shape[1]}), got {eot.tolist()}")
    if getattr(clip, "attn_mask", None) is not None and eot.numel():
        embeddings = embeddings[:, : int(eot.max()) + 1]
    x = _run_blocks(clip, embeddings, adapters, scale)
    return _project(clip, x[torch.arange(x.shape[0], device=x.device), eot])
