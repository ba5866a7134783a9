"""Where a run trains is not what it computes: batches, samplers and launch for 1..N processes.

A run's ``data.batch_size`` is the *global* batch: the clips of one optimizer step, whatever the
number of processes (``trainer.devices`` x ``trainer.num_nodes``). Each epoch's order of the
training clips is a function of ``(trainer.seed, epoch)`` only (:class:`EpochOrder`), cut into
global batches, and each process takes its slice of every batch (:class:`RankBatches`), padded
with masked repeats so that every process holds as many rows and takes as many steps. Together
with the batch-level computations of :mod:`dfer.model.batch_share` this makes N processes
compute the single-process run up to floating-point reduction order, and makes the order of
epoch k independent of what ran before it, which is what lets a resumed run (dfer.train.resume)
continue exactly.

Validation gives each process one contiguous slice of the test clips (:class:`RankSlices`),
padded the same way; the padding is dropped when the predictions of all processes are gathered
(``FineCLIPERModule.on_validation_epoch_end``), so no clip is counted twice (unlike PyTorch's
``DistributedSampler``, which repeats clips to even the processes out).

:func:`cluster_environment` chooses who starts the processes: ``srun`` / ``torchrun`` when they
started one per device, else Lightning (its subprocess launcher re-runs the ``dfer train``
command line once per extra device on this machine).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dfer.train.data import collate

#: the last word of the shuffle's seed key ``[seed, epoch, 0, SHUFFLE_STREAM]``: a stream apart
#: from the per-clip flips ``[seed, epoch, clip]`` and jitter ``[seed, epoch, clip, 1]``
#: (numpy's SeedSequence reads a missing trailing word as 0, so the last word must be non-zero)
SHUFFLE_STREAM = 2

#: one row of a batch: (index into the dataset, a clip of the batch (False: padding), clips in
#: the global batch)
Row = tuple[int, bool, int]


class EpochOrder(Sampler[int]):
    """The order of one epoch's clips: a permutation drawn from ``(seed, epoch)`` alone, or
    ``0..n-1`` without shuffling. Lightning calls :meth:`set_epoch` before every epoch (as it
    does for a DistributedSampler); nothing carries over between epochs."""

    def __init__(self, n: int, seed: int, shuffle: bool) -> None:
        self.n, self.seed, self.shuffle = int(n), int(seed), shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        rng = np.random.default_rng([self.seed, self.epoch, 0, SHUFFLE_STREAM])
        return [int(i) for i in rng.permutation(self.n)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        return self.n


def rank_rows(clips: list[int], rank: int, world: int) -> list[Row]:
    """Process ``rank``'s rows of the clips ``clips`` shared by ``world`` processes: the
    ``rank``-th of ``world`` contiguous slices of ``ceil(len / world)`` rows, padded at the end
    with masked repeats of the first clip (so every process holds the same number of rows and
    the gathered rows, padding dropped, are ``clips`` in order)."""
    if not clips:
        return []
    size = math.ceil(len(clips) / world)
    part = clips[rank * size:(rank + 1) * size]
    n = len(clips)
    return [(i, True, n) for i in part] + [(clips[0], False, n)] * (size - len(part))


class RankBatches(Sampler[list[Row]]):
    """This process's rows of every global training batch: ``order`` cut into batches of
    ``batch_size`` clips (the last one shorter, as ``drop_last=False``), each split by
    :func:`rank_rows`. Every process yields the same number of batches."""

    def __init__(self, order: EpochOrder, batch_size: int, rank: int = 0, world: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.sampler = order  # Lightning's set_epoch reaches it as batch_sampler.sampler
        self.batch_size, self.rank, self.world = int(batch_size), int(rank), int(world)

    def __iter__(self) -> Iterator[list[Row]]:
        order = self.sampler.order()
        for start in range(0, len(order), self.batch_size):
            yield rank_rows(order[start:start + self.batch_size], self.rank, self.world)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)


class RankSlices(Sampler[list[Row]]):
    """Evaluation: this process's contiguous slice of all clips (:func:`rank_rows` over the
    whole order), in batches of ``batch_size`` rows."""

    def __init__(self, order: EpochOrder, batch_size: int, rank: int = 0, world: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.sampler = order
        self.batch_size, self.rank, self.world = int(batch_size), int(rank), int(world)

    def _rows(self) -> list[Row]:
        return rank_rows(self.sampler.order(), self.rank, self.world)

    def __iter__(self) -> Iterator[list[Row]]:
        rows = self._rows()
        for start in range(0, len(rows), self.batch_size):
            yield rows[start:start + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.sampler) / self.world) / self.batch_size)


class MarkedRows(Dataset):
    """A dataset read by :data:`Row` keys: the item of the row's index, marked ``valid``
    (a clip of the batch, not padding) and with the global batch's clip count."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, row: Row) -> dict[str, Any]:
        index, valid, n_global = row
        item = dict(self.dataset[index])
        item["valid"], item["n_global"] = bool(valid), int(n_global)
        return item


def collate_rows(items: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`dfer.train.data.collate` plus ``valid`` ``[B]`` (bool) and ``n_global`` (int)."""
    batch = collate(items)
    batch["valid"] = torch.tensor([it["valid"] for it in items], dtype=torch.bool)
    batch["n_global"] = int(items[0]["n_global"]) if items else 0
    return batch


def cluster_environment(devices: int, num_nodes: int) -> Any:
    """Lightning's cluster environment: who starts the ``devices x num_nodes`` processes.

    - ``srun`` started them (its step has as many tasks as processes, ``SLURM_STEP_NUM_TASKS``:
      ``--ntasks-per-node`` = devices on every node): :class:`SLURMEnvironment` reads ranks
      from SLURM. Its auto-requeue is off: on SIGUSR1 it saves a mid-epoch checkpoint that
      Lightning itself warns cannot be resumed reproducibly; a requeued or retried job resumes
      from the last finished epoch instead (dfer.train.resume).
    - ``torchrun`` started them: :class:`TorchElasticEnvironment`.
    - otherwise (a Snakemake job holding N GPUs of one machine, a SLURM job with one task):
      :class:`LightningEnvironment`, under which Lightning starts the other local processes
      itself. That works on one node only: ``num_nodes > 1`` then is an error saying how to
      start the processes.
    """
    from lightning.pytorch.plugins.environments import (
        LightningEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    world = devices * num_nodes
    # srun sets SLURM_STEP_NUM_TASKS for the tasks it starts; a batch script (or a Snakemake job
    # step run without srun) sees only the job's SLURM_NTASKS, with one process running
    step_tasks = os.environ.get("SLURM_STEP_NUM_TASKS")
    if SLURMEnvironment.detect() and step_tasks is not None and int(step_tasks) == world:
        return SLURMEnvironment(auto_requeue=False)
    if TorchElasticEnvironment.detect():
        return TorchElasticEnvironment()
    if num_nodes > 1:
        found = f" (this srun step has {step_tasks} tasks)" if step_tasks else ""
        raise RuntimeError(
            f"trainer.num_nodes: {num_nodes} needs one process per device started on every node{found}: "
            f"run `srun dfer train ...` in a job with --nodes={num_nodes} --ntasks-per-node={devices} "
            f"(or torchrun --nnodes={num_nodes} --nproc-per-node={devices}); see docs/cluster.md")
    return LightningEnvironment()
