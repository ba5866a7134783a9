"""What the trainer, evaluation and ``dfer predict`` do with any method's model: one place.

Every model core has ``forward(...) -> out`` with ``out.logits`` ``[B, C]`` and
``out.probabilities()``, and ``losses(out, targets) -> {"loss": ..., ...}``; what differs
(which batch keys its forward takes, whether it handles a DDP :class:`BatchShare` itself, how
its parameters are grouped) is declared by its :class:`MethodSpec`. These functions read the
spec so that the Lightning module (:mod:`dfer.train.module`), evaluation and the predictor
never name a method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dfer.methods.registry import MethodSpec
from dfer.model.batch_share import BatchShare


def model_inputs(spec: MethodSpec, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the method's forward found in a collated batch."""
    return {k: batch[k] for k in spec.inputs if k in batch}


def forward(model: nn.Module, spec: MethodSpec, batch: Mapping[str, Any], share: BatchShare | None = None) -> Any:
    """The model on a batch; ``share`` reaches a method that handles it itself."""
    inputs = model_inputs(spec, batch)
    if share is not None and spec.shares_batch:
        return model(**inputs, share=share)
    return model(**inputs)


def losses(model: nn.Module, spec: MethodSpec, out: Any, targets: torch.Tensor,
           share: BatchShare | None = None) -> dict[str, torch.Tensor]:
    """The method's losses of a batch (``"loss"`` is optimised, every entry is logged).

    With a ``share`` (one of several training processes): a method that ``shares_batch``
    computes its own share; for the others the per-clip ``loss_fields`` of the output and the
    targets are gathered over the global batch (padding dropped, with gradients,
    :meth:`BatchShare.gather`) and the loss is the global batch's, on every process. Each
    process's backward then gives its part of the gradient of the sum of every process's (equal)
    loss, whose DDP average is the gradient of the global loss: exact for a batch-level loss
    such as CLIPER's in-batch counts, not only for means.
    """
    if share is None:
        return dict(model.losses(out, targets))
    if spec.shares_batch:
        return dict(model.losses(out, targets, share=share))
    gathered = {name: share.gather(getattr(out, name)) for name in spec.loss_fields}
    return dict(model.losses(dataclasses.replace(out, **gathered), share.gather(targets)))


def clip_loss(model: nn.Module, spec: MethodSpec, out: Any, targets: torch.Tensor) -> torch.Tensor:
    """The class loss of every clip ``[B]`` (validation): the method's, or CE of the logits."""
    if spec.clip_loss is not None:
        return spec.clip_loss(model, out, targets)
    return F.cross_entropy(out.logits.float(), targets, reduction="none")


def extras(model: nn.Module, spec: MethodSpec, out: Any) -> dict[str, torch.Tensor]:
    """Values the method logs once per epoch besides its losses (FineCLIPER: its scale and
    fusion weights)."""
    return dict(spec.extras(model, out)) if spec.extras is not None else {}


def start_epoch(model: nn.Module, spec: MethodSpec, epoch: int) -> None:
    """Tell a method whose loss depends on the epoch (``MethodSpec.on_epoch``) which one starts."""
    if spec.on_epoch is not None:
        spec.on_epoch(model, int(epoch))


def parameter_groups(model: nn.Module, spec: MethodSpec) -> dict[str, list[nn.Parameter]]:
    """The method's named parameter groups (what ``optim`` stages and learning rates name)."""
    return {name: list(params) for name, params in spec.groups(model).items()}


def enter_stage(model: nn.Module, spec: MethodSpec, stage: Any, alone: bool = True) -> None:
    """Tell the model that optimiser stage ``stage`` (a ``StageConfig``) starts, for a method
    whose forward depends on it (A3lign-DFER's BAP); the others need nothing."""
    if spec.enter_stage is not None:
        spec.enter_stage(model, stage, alone)


def tunable_parameters(model: nn.Module, spec: MethodSpec) -> list[nn.Parameter]:
    """Every parameter some stage trains (the union of the groups, each once)."""
    seen: dict[int, nn.Parameter] = {}
    for params in parameter_groups(model, spec).values():
        for p in params:
            seen.setdefault(id(p), p)
    return list(seen.values())


def count_parameters(model: nn.Module, spec: MethodSpec) -> dict[str, int]:
    """Tunable parameter counts by part plus ``tunable_total`` (train.json, the report)."""
    if spec.counts is not None:
        return dict(spec.counts(model))
    counts = {name: sum(p.numel() for p in params) for name, params in parameter_groups(model, spec).items()}
    tunable = tunable_parameters(model, spec)
    counts["tunable_total"] = sum(p.numel() for p in tunable)
    ids = {id(p) for p in tunable}
    counts["frozen"] = sum(p.numel() for p in model.parameters() if id(p) not in ids)
    return counts


def flip_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch with its frames mirrored left-right (the ``hflip`` test view)."""
    if "parsing" in batch or "landmarks" in batch or "landmark_features" in batch:
        raise ValueError("the hflip test view mirrors frames only; a model reading rendered "
                         "landmarks, parsing maps or landmark feature maps would see them "
                         "unmirrored (data.test_views)")
    out = dict(batch)
    out["frames"] = batch["frames"].flip(-2)  # [B, T, H, W, 3]: W is the second to last axis
    return out


def view_outputs(model: nn.Module, spec: MethodSpec, batch: Mapping[str, Any],
                 views: Sequence[str] = ("identity",)) -> tuple[torch.Tensor, Any]:
    """``(probabilities [B, C] averaged over the test views, the identity view's output)``;
    the output (whose similarities and weights explain a prediction) is the first view's when
    ``identity`` is not among the views."""
    probs, explained = None, None
    for view in views:
        out = forward(model, spec, flip_batch(batch) if view == "hflip" else batch)
        p = out.probabilities()
        probs = p if probs is None else probs + p
        if explained is None or view == "identity":
            explained = out
    assert probs is not None
    return probs / len(views), explained
