"""One process's part of a batch split over several (tests/test_train_distributed.py).

Kept apart from the test module and free of Lightning: the test starts its processes with
``spawn`` (a fork after Lightning trained in the same pytest process can hang in torch's thread
pool), and each of them imports only this module, torch and the model.
"""

from __future__ import annotations

import os

import torch

from dfer.model.batch_share import BatchShare
from dfer.model.config import ModelConfig
from dfer.model.fineclip import FineCLIPER
from dfer.train.distributed import rank_rows

LABELS = ["c0", "c1", "c2", "c3"]
WORDS = ["up", "down", "left", "right", "in", "out", "on"]


def tiny_model(standardize: bool) -> FineCLIPER:
    """The tiny model with every level, the caption alignment, and adapters moved off zero."""
    torch.manual_seed(0)
    model = FineCLIPER(ModelConfig.from_dict({"backbone": "tiny", "pretrained": None, "align_weight": 0.5,
                                              "standardize_features": standardize}), LABELS)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the identity start: every adapter takes part
        for p in model.tunable_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.train()


def image_batch(n: int = 7) -> dict:
    """A fixed batch of ``n`` clips (2 frames per level, 64 px, a caption each)."""
    gen = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 255, (n, 2, 64, 64, 3), generator=gen, dtype=torch.uint8) for _ in range(3)]
    return {"frames": images[0], "parsing": images[1], "landmarks": images[2],
            "captions": [f"a square moves {w} {i}" for i, w in enumerate(WORDS)][:n],
            "label": torch.tensor([i % len(LABELS) for i in range(n)])}


def batch_rows(batch: dict, index: list[int]) -> dict:
    """The rows ``index`` of a batch (repeats allowed: padding)."""
    return {k: ([v[i] for i in index] if isinstance(v, list) else v[index]) for k, v in batch.items()}


def train_step(model: FineCLIPER, batch: dict, share: BatchShare | None) -> dict:
    """Forward, losses and backward: the losses, gradients and feature statistics after it."""
    inputs = {k: v for k, v in batch.items() if k != "label"}
    losses = model.losses(model(**inputs, share=share), batch["label"], share=share)
    losses["loss"].backward()
    return {
        "losses": {k: float(v.detach()) for k, v in losses.items()},
        "grads": {k: p.grad.clone() for k, p in model.tunable_parameters().items() if p.grad is not None},
        "buffers": {k: b.clone() for k, b in model.feature_norms.named_buffers()},
    }


def share_worker(rank: int, world: int, port: int, queue) -> None:
    """One of ``world`` processes: its rows of the batch, the DDP average of the gradients."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    batch = image_batch()
    rows = rank_rows(list(range(len(batch["label"]))), rank, world)
    share = BatchShare(torch.tensor([valid for _, valid, _ in rows]), len(batch["label"]))
    results = {}
    for standardize in (True, False):
        got = train_step(tiny_model(standardize), batch_rows(batch, [i for i, _, _ in rows]), share)
        for g in got["grads"].values():
            dist.all_reduce(g)
            g /= world
        losses = {}
        for name, value in got["losses"].items():  # each process logs its share: their mean
            t = torch.tensor(value, dtype=torch.float64)
            dist.all_reduce(t)
            losses[name] = float(t) / world
        results[standardize] = {"losses": losses, "grads": {k: v.numpy() for k, v in got["grads"].items()},
                                "buffers": {k: v.numpy() for k, v in got["buffers"].items()}}
    if rank == 0:
        queue.put(results)
    dist.barrier()
    dist.destroy_process_group()
