"""Tunable-weights checkpoints: a safetensors file of adapter weights + the model config.

The frozen backbone is never stored (it is hundreds of MB and comes from its own source); the
metadata holds the full :class:`ModelConfig`, the class labels and where the run came from, so
``load_checkpoint`` can rebuild the exact model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from dfer.core.artifacts import META_KEY, provenance, write_safetensors
from dfer.model.config import ModelConfig, migrate_v1
from dfer.model.fineclip import FineCLIPER

#: 2: paper-default model keys (``temporal``, ``text_adapter``, ``mid_adapter_ratio``, ...);
#: schema-1 model configs are translated by :func:`dfer.model.config.migrate_v1` on load.
CHECKPOINT_SCHEMA_VERSION = 2


def save_checkpoint(
    path: str | os.PathLike[str],
    model: FineCLIPER,
    labels: Sequence[str] | None = None,
    **info: Any,
) -> Path:
    """Write the model's trainable weights (float32) with config and labels in the metadata."""
    tensors = {n: t.float().numpy() for n, t in model.tunable_state_dict().items()}
    meta = provenance(
        "train", CHECKPOINT_SCHEMA_VERSION,
        model=model.cfg.to_dict(), labels=list(labels if labels is not None else model.labels),
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


def load_checkpoint(
    path: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[FineCLIPER, dict[str, Any]]:
    """Rebuild a model from a checkpoint; ``overrides`` may e.g. point ``pretrained`` elsewhere.

    ``labels`` replaces the trained class names (zero-shot transfer to another label set).
    """
    state, meta = read_checkpoint(path)
    cfg_dict = dict(meta["model"])
    if int(meta.get("schema_version", CHECKPOINT_SCHEMA_VERSION)) < 2:
        cfg_dict = migrate_v1(cfg_dict)
        # schema 1 drew landmarks on black; evaluation / prediction read the run's data block
        params = meta.get("params")
        if isinstance(params, dict) and isinstance(params.get("data"), dict):
            params["data"].setdefault("landmarks_on_face", False)
    cfg_dict.update(overrides or {})
    cfg = ModelConfig.from_dict(cfg_dict)
    model = FineCLIPER(cfg, labels=list(labels) if labels is not None else meta["labels"])
    model.load_tunable_state_dict(state)
    model.eval()
    return model, meta
