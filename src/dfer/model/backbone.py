"""Build the frozen CLIP backbone and its tokenizer with open_clip.

Weights come from an open_clip pretrained tag (downloaded to the hub cache where a network
exists), a local checkpoint file in OpenAI's or open_clip's layout (read here and loaded
strictly, for named architectures and explicit ``model_cfg`` alike), a ``local-dir:`` model
folder, or nowhere (random init: tests, benchmarks, parameter counting). The model is always
returned frozen and in eval mode.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfer.model.config import ModelConfig

log = logging.getLogger(__name__)

Tokenizer = Callable[[list[str]], torch.Tensor]


def build_clip(cfg: ModelConfig) -> tuple[nn.Module, Tokenizer]:
    """Return ``(clip_model, tokenizer)`` for ``cfg``, frozen, eval mode, on CPU."""
    # random init draws from a fixed seed without touching the caller's random state: with
    # ``pretrained`` null the frozen weights are not in the checkpoint and must be re-created
    # bit for bit; with weights the draw is overwritten and the seed does not matter
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        return _build_clip(cfg)


def build_open_clip(
    backbone: str, pretrained: str | None, model_cfg: dict[str, Any] | None = None, init_seed: int = 0
) -> tuple[nn.Module, Tokenizer]:
    """:func:`build_clip` from the four backbone keys every CLIP-based method's config has.

    The keys mean what they mean in :class:`ModelConfig` (and are checked by its rules: a
    ``model_cfg`` with a named backbone and no weights file is refused, and so on), so DFER-CLIP
    and CLIPER load weights exactly as FineCLIPER does. Frozen and in eval mode, like
    :func:`build_clip`: a method that tunes a tower switches it on itself.
    """
    cfg = ModelConfig(backbone=backbone, pretrained=pretrained, model_cfg=model_cfg, init_seed=init_seed)
    cfg.validate()
    return build_clip(cfg)


def _build_clip(cfg: ModelConfig) -> tuple[nn.Module, Tokenizer]:
    import open_clip

    explicit = cfg.open_clip_cfg()
    weights_file = cfg.pretrained if cfg.pretrained and _is_file_ref(cfg.pretrained) else None
    if explicit is not None:
        model = open_clip.CLIP(**_copy(explicit))
        context = int(explicit.get("text_cfg", {}).get("context_length", 77))
        tokenizer: Tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    else:
        tag = cfg.pretrained if cfg.pretrained and weights_file is None else None
        try:
            model = open_clip.create_model(cfg.backbone, pretrained=tag, load_weights=tag is not None)
        except RuntimeError as exc:
            raise RuntimeError(
                f"could not build CLIP backbone model.backbone={cfg.backbone!r} with "
                f"model.pretrained={cfg.pretrained!r}: {exc}. Without network access set "
                "model.pretrained to a local checkpoint file (or null for random init)."
            ) from exc
        tokenizer = open_clip.get_tokenizer(cfg.backbone)
    if weights_file is not None:
        load_backbone_weights(model, weights_file)
    check_supported(model)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    return model, tokenizer


def _is_file_ref(value: str) -> bool:
    """A local checkpoint (existing file or path-like string) rather than an open_clip tag."""
    from dfer.model.config import looks_like_path

    return os.path.isfile(value) or looks_like_path(value)


#: entries of OpenAI's checkpoints that are model settings, not weights
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


def read_backbone_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The weights in a CLIP checkpoint file, in open_clip's key layout.

    Reads safetensors, OpenAI's TorchScript archives, and ``torch.save``'d state dicts (OpenAI's
    layout, with its ``input_resolution`` / ``context_length`` / ``vocab_size`` entries and
    float16 weights, or open_clip's, bare or under ``state_dict`` with a ``module.`` prefix).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model.pretrained: checkpoint file {p} does not exist")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(p), device="cpu")
    else:
        state = _torchscript_state(p)  # OpenAI's released checkpoints are TorchScript archives
        if state is None:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"model.pretrained: {p} holds no state dict (got {type(state).__name__})")
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    for key in OPENAI_EXTRA_KEYS:
        state.pop(key, None)
    return state


def _torchscript_state(path: Path) -> dict[str, torch.Tensor] | None:
    """The state dict of a TorchScript archive (it holds ``constants.pkl``), else None."""
    import warnings
    import zipfile

    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as zf:
        if not any(n.endswith("constants.pkl") for n in zf.namelist()):
            return None
    with warnings.catch_warnings():  # torch.jit.load is deprecated, OpenAI's files need it
        warnings.simplefilter("ignore", FutureWarning)
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())


def load_backbone_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a checkpoint file into ``model`` strictly; any missing, unexpected or misshapen
    key is an error naming ``model.pretrained`` (a run must never train on a backbone that
    came out random or half loaded while its config asks for weights)."""
    from open_clip.model import convert_to_custom_text_state_dict

    state = read_backbone_state_dict(path)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)  # text tower under ``text.``
    own = model.state_dict()
    # buffers the model derives itself (the text causal ``attn_mask``): TorchScript archives
    # store them, open_clip does not
    derived = {n for n, _ in model.named_buffers()} - set(own)
    state = {k: v for k, v in state.items() if k not in derived}
    for key in ("logit_scale", "logit_bias"):
        if key in state and key in own and state[key].ndim != own[key].ndim:
            state[key] = state[key].reshape(own[key].shape)
    matched = set(state) & set(own)
    if not matched:
        raise ValueError(
            f"model.pretrained: {path} loads nothing into {type(model).__name__} (none of its "
            f"{len(state)} keys, e.g. {sorted(state)[:3]}, is a weight of this architecture)"
        )
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in matched if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(
            f"model.pretrained: {path} does not fit the configured architecture "
            f"(model.backbone / model.model_cfg): missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, wrong shape {wrong[:5]}"
        )
    model.load_state_dict(state, strict=True)
    log.info("loaded %d backbone tensors from %s", len(state), path)


def check_supported(model: nn.Module) -> None:
    """Adapters are inserted into open_clip's own ViT blocks; refuse anything else clearly."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    visual = getattr(model, "visual", None)
    if not isinstance(visual, VisionTransformer):
        raise ValueError(
            f"the CLIP-based methods need an open_clip VisionTransformer image tower, got {type(visual).__name__}"
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
