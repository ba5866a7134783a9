"""Checkpoints of every method: a safetensors file of its weights + the method and its config.

What the file holds follows the method's checkpoint policy (:attr:`MethodSpec.checkpoint`):

- ``tunable`` (FineCLIPER): the trained weights and learned statistics only; the frozen
  backbone (hundreds of MB) is re-created from its source (``pretrained``, or ``init_seed`` for
  a random one) when the checkpoint is loaded;
- ``full`` (DFER-CLIP, CLIPER: they tune the image tower): the whole state dict, so the file
  alone rebuilds the model (no backbone weights needed to evaluate or predict).

The metadata holds the method (schema 3), its full config, the class labels and where the run
came from, so :func:`load_checkpoint` rebuilds the exact model. A schema-2 file has no
``method`` and is FineCLIPER's; schema-1 model configs are translated by
:func:`dfer.methods.specs.fineclipper.migrate_v1`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfer.core.artifacts import META_KEY, provenance, write_safetensors
from dfer.methods.registry import DEFAULT_METHOD, MethodSpec, get_method, spec_of_model
from dfer.model.config import RANDOM_BACKBONES

#: 3: the ``method`` key and the method's own config in ``model``; 2: FineCLIPER's paper-default
#: keys (``temporal``, ``text_adapter``, ...); 1: FineCLIPER's boolean adapter keys.
CHECKPOINT_SCHEMA_VERSION = 3


def method_state(model: nn.Module, spec: MethodSpec | None = None) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint (and a resume file) of ``model`` holds, by name, live.

    ``tunable``: the model's ``tunable_state()``; ``full``: its whole state dict. The set of
    names does not depend on which parameters the current training stage updates.
    """
    spec = spec or spec_of_model(model)
    if spec.checkpoint == "tunable":
        return dict(model.tunable_state())  # type: ignore[operator]
    return dict(model.state_dict(keep_vars=True))


def load_method_state(model: nn.Module, state: Mapping[str, torch.Tensor], spec: MethodSpec | None = None) -> None:
    """Load what :func:`method_state` saved; the key sets and shapes must match exactly (a
    checkpoint of another config is an error naming the keys, never a partial load)."""
    spec = spec or spec_of_model(model)
    if spec.checkpoint == "tunable":
        model.load_tunable_state_dict(dict(state))  # type: ignore[operator]
        return
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in own}
    # safetensors files written through numpy hold 0-d tensors (CLIP's logit_scale) as [1]
    state = {k: v.reshape(()) if k in own and own[k].ndim == 0 and v.numel() == 1 else v
             for k, v in state.items()}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(
            f"checkpoint does not fit this {spec.title} config: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}, wrong shape {wrong[:5]}"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def method_of(meta: Mapping[str, Any]) -> str:
    """The method a checkpoint's metadata names (files before schema 3: FineCLIPER)."""
    return str(meta.get("method") or DEFAULT_METHOD)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    labels: Sequence[str] | None = None,
    **info: Any,
) -> Path:
    """Write the model's weights (float32, as its method's policy says) with the method, its
    config and the labels in the metadata."""
    spec = spec_of_model(model)
    tensors = {n: t.detach().float().cpu().contiguous().numpy() for n, t in method_state(model, spec).items()}
    meta = provenance(
        "train", CHECKPOINT_SCHEMA_VERSION,
        method=spec.name, checkpoint_policy=spec.checkpoint,
        model=model.cfg.to_dict(), labels=list(labels if labels is not None else model.labels),  # type: ignore[union-attr]
        **info,
    )
    return write_safetensors(path, tensors, meta)


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return ``(state_dict, metadata)`` of a checkpoint written by :func:`save_checkpoint`."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    with safe_open(str(p), framework="pt") as fh:
        raw = (fh.metadata() or {}).get(META_KEY)
        state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no iter
    if not raw:
        raise ValueError(f"{p} is not a dfer checkpoint (no '{META_KEY}' metadata)")
    meta = json.loads(raw)
    if meta.get("stage") != "train" or "model" not in meta:
        raise ValueError(f"{p} is not a dfer training checkpoint (metadata stage={meta.get('stage')!r})")
    return state, meta


def _without_weights_source(cfg: Any) -> Any:
    """``cfg`` asking for a random backbone of the same architecture: a ``full`` checkpoint
    brings every weight itself, so building must not need (or download) the original ones."""
    if getattr(cfg, "pretrained", None) is None:
        return cfg
    if not hasattr(cfg, "backbone"):  # not an open_clip model (S2D's timm ViT): no name to keep
        return dataclasses.replace(cfg, pretrained=None)
    backbone = cfg.backbone
    if cfg.model_cfg is not None and backbone not in RANDOM_BACKBONES:
        backbone = "custom"
    return dataclasses.replace(cfg, pretrained=None, backbone=backbone)


def load_checkpoint(
    path: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a checkpoint; ``overrides`` may e.g. point ``pretrained`` elsewhere.

    ``labels`` replaces the trained class names (zero-shot transfer to another label set), for
    a method that supports it (:attr:`MethodSpec.zero_shot`).
    """
    state, meta = read_checkpoint(path)
    spec = get_method(method_of(meta))
    cfg_dict = dict(meta["model"])
    schema = int(meta.get("schema_version", CHECKPOINT_SCHEMA_VERSION))
    if schema < 2:
        from dfer.methods.specs.fineclipper import migrate_v1

        cfg_dict = migrate_v1(cfg_dict)
        # schema 1 drew landmarks on black; evaluation / prediction read the run's data block
        params = meta.get("params")
        if isinstance(params, dict) and isinstance(params.get("data"), dict):
            params["data"].setdefault("landmarks_on_face", False)
    cfg_dict.update(overrides or {})
    cfg = spec.parse(cfg_dict)
    trained = list(meta["labels"])
    if labels is not None and list(labels) != trained and not spec.zero_shot:
        raise ValueError(f"{path}: {spec.title} cannot score classes it was not trained on "
                         f"(trained: {trained}; asked: {list(labels)}): its class text is learned per class")
    wanted = list(labels) if labels is not None else trained
    built_from = cfg if spec.checkpoint == "tunable" or "pretrained" in (overrides or {}) else _without_weights_source(cfg)
    model = spec.build(built_from, wanted)
    model.cfg = cfg  # the config it was trained with, whatever the weights were built from
    load_method_state(model, state, spec)
    model.eval()
    meta["method"] = spec.name
    return model, meta
