"""Build the frozen CLIP backbone and its tokenizer with open_clip.

Weights come from an open_clip pretrained tag (downloaded to the hub cache where a network
exists), a local checkpoint file, a ``local-dir:`` model folder, or nowhere (random init: tests,
benchmarks, parameter counting). The model is always returned frozen and in eval mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dfer.model.config import ModelConfig

log = logging.getLogger(__name__)

Tokenizer = Callable[[list[str]], torch.Tensor]


def build_clip(cfg: ModelConfig) -> tuple[nn.Module, Tokenizer]:
    """Return ``(clip_model, tokenizer)`` for ``cfg``, frozen, eval mode, on CPU."""
    if cfg.pretrained:
        return _build_clip(cfg)
    # random init: the frozen weights are not in the checkpoint, so they come from a fixed seed
    # (without touching the caller's random state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        return _build_clip(cfg)


def _build_clip(cfg: ModelConfig) -> tuple[nn.Module, Tokenizer]:
    import open_clip

    explicit = cfg.open_clip_cfg()
    if explicit is not None:
        model = open_clip.CLIP(**_copy(explicit))
        if cfg.pretrained:
            open_clip.load_checkpoint(model, cfg.pretrained, strict=True)
        context = int(explicit.get("text_cfg", {}).get("context_length", 77))
        tokenizer: Tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    else:
        try:
            model = open_clip.create_model(
                cfg.backbone,
                pretrained=cfg.pretrained or None,
                load_weights=bool(cfg.pretrained),
            )
        except RuntimeError as exc:
            raise RuntimeError(
                f"could not build CLIP backbone {cfg.backbone!r} with pretrained={cfg.pretrained!r}: "
                f"{exc}. Without network access set `pretrained` to a local checkpoint file "
                "(or null for random init)."
            ) from exc
        tokenizer = open_clip.get_tokenizer(cfg.backbone)
    check_supported(model)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    return model, tokenizer


def check_supported(model: nn.Module) -> None:
    """Adapters are inserted into open_clip's own ViT blocks; refuse anything else clearly."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    visual = getattr(model, "visual", None)
    if not isinstance(visual, VisionTransformer):
        raise ValueError(
            f"FineCLIPER needs an open_clip VisionTransformer image tower, got {type(visual).__name__}"
        )
    if visual.attn_pool is not None:
        raise ValueError("image towers with attentional pooling are not supported")
    for blk in visual.transformer.resblocks:
        if type(blk) is not ResidualAttentionBlock:
            raise ValueError(
                f"unsupported vision block {type(blk).__name__}; only standard ViT blocks take adapters"
            )
    if not getattr(visual.transformer, "batch_first", True):
        raise ValueError("only batch-first open_clip transformers are supported")


def _copy(cfg: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(dict(cfg))


def image_mean_std(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation constants of the backbone (open_clip's preprocess cfg, OpenAI's default)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    pp = getattr(getattr(model, "visual", None), "preprocess_cfg", None) or {}
    mean = tuple(pp.get("mean", OPENAI_DATASET_MEAN))
    std = tuple(pp.get("std", OPENAI_DATASET_STD))
    return mean, std
