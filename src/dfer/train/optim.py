"""Optimisers and learning-rate schedules of every method, stage by stage.

A run's ``optim`` block (:class:`dfer.train.config.OptimConfig`, over its method's defaults)
is one stage or a list of them (``optim.stages``). A stage names the method's parameter groups
it trains (:attr:`dfer.methods.registry.MethodSpec.groups`), its optimiser (AdamW or SGD, a
learning rate per group) and its schedule. At the first epoch of each stage the Lightning module
builds a **new** optimiser and scheduler for it (:func:`build_stage`; CLIPER: AdamW on its
descriptors for two epochs, then a fresh AdamW on the image tower), and the groups the stage does
not train stop changing:

- alone, their ``requires_grad`` is switched off (no gradient is computed for them);
- under DDP they keep it (DDP registers the parameters that need a gradient when it wraps the
  model, so switching them on later would leave their gradients unsynchronised): they get
  gradients but are in no optimiser, so they stay as they are all the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dfer.train.config import OptimConfig, StageConfig


def stage_starts(stages: Sequence[StageConfig]) -> list[int]:
    """The first (0-based) epoch of each stage."""
    starts, epoch = [], 0
    for stage in stages:
        starts.append(epoch)
        epoch += int(stage.epochs or 0)
    return starts


def stage_at(stages: Sequence[StageConfig], epoch: int) -> int:
    """The index of the stage that trains 0-based ``epoch`` (the last one runs to the end)."""
    starts = stage_starts(stages)
    for i in range(len(stages) - 1, -1, -1):
        if epoch >= starts[i]:
            return i
    return 0


def trained_groups(stage: StageConfig, groups: Mapping[str, Sequence[nn.Parameter]]) -> list[str]:
    """The groups ``stage`` trains, in the method's order; an unknown name is an error."""
    if stage.groups is None:
        return list(groups)
    unknown = sorted(set(stage.groups) - set(groups))
    if unknown:
        raise ValueError(f"optim groups {unknown} are not parameter groups of this method "
                         f"(it has: {', '.join(groups)})")
    return [g for g in groups if g in stage.groups]


def param_groups(stage: StageConfig, groups: Mapping[str, Sequence[nn.Parameter]]) -> list[dict[str, Any]]:
    """The optimiser's parameter groups for ``stage``: one per trained method group (its
    ``group_lr`` or ``lr``), split into decayed and undecayed parameters when 1-d parameters
    are exempt from weight decay (``decay_1d: false``); empty ones left out."""
    names = trained_groups(stage, groups)
    rates = dict(stage.group_lr or {})
    unknown = sorted(set(rates) - set(groups))
    if unknown:
        raise ValueError(f"optim.group_lr names {unknown}, which are not parameter groups of this "
                         f"method (it has: {', '.join(groups)})")
    out: list[dict[str, Any]] = []
    for name in names:
        params = [p for p in groups[name]]
        lr = float(rates.get(name, stage.lr))
        if stage.decay_1d:
            parts = [(params, stage.weight_decay)]
        else:
            parts = [([p for p in params if p.ndim >= 2], stage.weight_decay),
                     ([p for p in params if p.ndim < 2], 0.0)]
        for ps, wd in parts:
            if ps:
                out.append({"params": ps, "lr": lr, "weight_decay": float(wd), "name": name})
    if not out:
        raise ValueError(f"optim stage trains groups {names}, which hold no parameters")
    return out


def make_optimizer(stage: StageConfig, groups: Mapping[str, Sequence[nn.Parameter]]) -> torch.optim.Optimizer:
    """AdamW or SGD over the stage's parameter groups."""
    pg = param_groups(stage, groups)
    if stage.optimizer == "sgd":
        return torch.optim.SGD(pg, lr=stage.lr, momentum=stage.momentum, weight_decay=stage.weight_decay)
    return torch.optim.AdamW(pg, lr=stage.lr, eps=stage.eps, weight_decay=stage.weight_decay)


def make_scheduler(stage: StageConfig, opt: torch.optim.Optimizer, stage_steps: int) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` entry of the stage (None: constant rate)."""
    if stage.schedule == "constant":
        return None
    if stage.schedule == "multistep":
        sched: Any = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(stage.milestones), gamma=stage.gamma)
        return {"scheduler": sched, "interval": "epoch"}
    if stage.schedule == "cosine_restarts":
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=stage.t0, T_mult=stage.t_mult,
                                                                      eta_min=stage.eta_min)
        return {"scheduler": sched, "interval": "epoch"}
    total = max(1, int(stage_steps))
    warmup = int(stage.warmup_fraction * total)
    floor = stage.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor), "interval": "step"}


@dataclass
class Stage:
    """A built stage: its index, optimiser and Lightning scheduler entry."""

    index: int
    config: StageConfig
    optimizer: torch.optim.Optimizer
    scheduler: dict[str, Any] | None


def stage_steps(stages: Sequence[StageConfig], index: int, max_epochs: int, total_steps: int) -> int:
    """Optimizer steps of stage ``index``: its share of the run's ``total_steps`` (all of them
    for a single stage, exactly what a one-stage run always used)."""
    if len(stages) == 1:
        return total_steps
    starts = stage_starts(stages)
    end = starts[index + 1] if index + 1 < len(stages) else max_epochs
    epochs = max(0, min(end, max_epochs) - starts[index])
    return max(1, round(total_steps * epochs / max(1, max_epochs)))


def freeze_for_stage(stage: StageConfig, groups: Mapping[str, Sequence[nn.Parameter]], alone: bool) -> None:
    """Switch gradients on for the stage's groups and, in a single process, off for the
    method's other groups (see the module docstring for DDP)."""
    trained = set(trained_groups(stage, groups))
    on = {id(p) for g in trained for p in groups[g]}
    for name, params in groups.items():
        for p in params:
            if id(p) in on:
                p.requires_grad_(True)
            elif alone and name not in trained:
                p.requires_grad_(False)


def build_stage(optim: OptimConfig, groups: Mapping[str, Sequence[nn.Parameter]], epoch: int,
                max_epochs: int, total_steps: int, alone: bool = True) -> Stage:
    """The stage that trains 0-based ``epoch``: its groups' gradients switched, a new
    optimiser and scheduler."""
    stages = optim.resolved_stages()
    index = stage_at(stages, epoch)
    stage = stages[index]
    freeze_for_stage(stage, groups, alone)
    opt = make_optimizer(stage, groups)
    sched = make_scheduler(stage, opt, stage_steps(stages, index, max_epochs, total_steps))
    return Stage(index, stage, opt, sched)
