"""One process's share of a global batch, for the model's batch-level computations under DDP.

With several training processes each holds a slice of every global batch (``data.batch_size``
clips, split by :class:`dfer.train.distributed.RankBatches`, padded with masked rows so that
every process holds as many rows). Most of the loss is a mean over clips, which gradient
averaging makes exact once each process weights its rows by ``world / n_global``; three things
look at the whole batch and are computed from every process's rows instead:

- the caption-video alignment loss (InfoNCE: every clip's negatives are the batch's other clips),
- the batch statistics of ``standardize_features`` (BatchNorm over the batch),
- the logged per-batch values.

The collectives carry gradients (:class:`_GatherRows`, :class:`_Total`): each process's
backward pass then yields its part of the gradient of the sum of all processes' objectives,
and DDP's average of those parts is the gradient of the global-batch loss, so that training on
N processes follows the single-process run up to floating-point reduction order.

Without an initialised process group (one process) every collective is the identity, so a
share with padded rows can be checked against the plain batch in one process
(tests/test_train_distributed.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist


def _world() -> tuple[int, int]:
    """(world size, rank) of the default process group; (1, 0) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _Total(torch.autograd.Function):
    """Sum over processes; the gradient of each input is the sum of every process's output
    gradient (each process's objective depends on every input through the sum)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        g = grad.contiguous().clone()
        dist.all_reduce(g)
        return g


class _GatherRows(torch.autograd.Function):
    """Every process's rows, concatenated in rank order (all processes pass as many rows).

    Backward: this process's slice of the sum of every process's gradient (an all-reduce, which
    every backend has; the gathered tensors here are a batch of feature vectors)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world, rank = _world()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.rows = rank, x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        g = grad.contiguous().clone()
        dist.all_reduce(g)
        return g[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


@dataclass
class BatchShare:
    """This process's rows of a global batch of ``n_global`` clips.

    ``valid`` marks the rows that are clips of the batch (False: padding, a repeated clip that
    counts nowhere). ``world`` / ``rank`` default to the process group's.
    """

    valid: torch.Tensor
    n_global: int
    world: int = field(default_factory=lambda: _world()[0])
    rank: int = field(default_factory=lambda: _world()[1])
    _gathered_valid: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.valid = self.valid.bool()
        if self.n_global < 1:
            raise ValueError(f"a batch share needs at least one clip in the global batch, got {self.n_global}")

    def total(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` summed over processes (with gradients)."""
        return _Total.apply(x) if self.world > 1 else x

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """The global batch's rows of ``x`` (``[rows, ...]`` per process) in batch order,
        padding dropped (with gradients)."""
        if self.world == 1:
            return x[self.valid]
        if self._gathered_valid is None:
            mask = self.valid.to(torch.uint8)  # as bytes: not every backend gathers bools
            parts = [torch.empty_like(mask) for _ in range(self.world)]
            dist.all_gather(parts, mask.contiguous())
            self._gathered_valid = torch.cat(parts).bool()
        return _GatherRows.apply(x)[self._gathered_valid]

    def mean_share(self, per_clip: torch.Tensor) -> torch.Tensor:
        """This process's share of the global mean of a per-clip value: ``world x`` the sum
        over its valid rows / ``n_global``. The mean of the shares over processes is the
        global mean (what the logs show), and DDP's gradient average of the shares is the
        gradient of the global mean."""
        kept = torch.where(self.valid, per_clip, torch.zeros_like(per_clip))
        return kept.sum() * (self.world / self.n_global)
