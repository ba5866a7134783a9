"""One process's part of a batch split over several, for the methods whose loss the trainer
gathers (DFER-CLIP, CLIPER, S2D with its self-distillation queues: dfer.methods.api.losses);
tests/test_methods_training.py.

Free of Lightning and of the test module, as tests/support/share_worker.py: the test starts
its processes with ``spawn``.
"""

from __future__ import annotations

import os

import torch

from dfer.methods import api
from dfer.methods.registry import build_model, get_method
from dfer.model.batch_share import BatchShare
from dfer.train.distributed import rank_rows

LABELS = ["happiness", "sadness", "neutral", "anger"]
TINY = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
BLOCKS = {
    "dferclip": {"backbone": "custom", "pretrained": None, "model_cfg": TINY, "temporal_heads": 2,
                 "temporal_head_dim": 16, "temporal_mlp_dim": 64, "max_frames": 2},
    "cliper": {"backbone": "custom", "pretrained": None, "model_cfg": TINY, "sub_descriptors": 3,
               "descriptor_init_std": 0.05},
    # 32 px / 16 px patches: a 2 x 2 grid of 8-channel maps; SDL on with queues shorter than
    # the batch, so the order in which the global batch enters them matters
    "s2d": {"img_size": 32, "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2,
            "adapter_heads": 2, "num_frames": 2, "head_dropout": 0.0, "landmark_kind": None,
            "landmark_channels": 8, "sdl": True, "sdl_queue_size": 2},
}
#: the methods ``share_worker`` runs
METHODS = tuple(BLOCKS)
#: an epoch at which S2D's SDL weight is 1 (the public schedule), so its loss has a gradient
SDL_EPOCH = 80


def tiny_model(method: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(method, BLOCKS[method], LABELS).train()
    if method == "s2d":
        api.start_epoch(model, get_method(method), SDL_EPOCH)
    return model


def image_batch(n: int = 7) -> dict:
    """A fixed batch of ``n`` clips (2 frames, 32 px); labels repeat so CLIPER's counts matter."""
    gen = torch.Generator().manual_seed(2)
    return {"frames": torch.randint(0, 255, (n, 2, 32, 32, 3), generator=gen, dtype=torch.uint8),
            "landmark_features": torch.randn(n, 2, 8, 2, 2, generator=gen),
            "label": torch.tensor([i % 3 for i in range(n)])}


def batch_rows(batch: dict, index: list[int]) -> dict:
    return {k: v[index] for k, v in batch.items()}


def train_step(method: str, batch: dict, share: BatchShare | None) -> dict:
    """Forward, the method's losses through the trainer's path, backward."""
    model = tiny_model(method)
    spec = get_method(method)
    out = api.forward(model, spec, batch, share)
    losses = api.losses(model, spec, out, batch["label"], share)
    losses["loss"].backward()
    return {"losses": {k: float(v.detach()) for k, v in losses.items()},
            "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            "buffers": {n: b.clone() for n, b in model.named_buffers() if n.startswith("sdl.")}}


def share_worker(rank: int, world: int, port: int, queue) -> None:
    """One of ``world`` processes: its rows, the DDP average of the gradients, the mean of the
    logged losses."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    batch = image_batch()
    rows = rank_rows(list(range(len(batch["label"]))), rank, world)
    share = BatchShare(torch.tensor([valid for _, valid, _ in rows]), len(batch["label"]))
    results = {}
    for method in METHODS:
        got = train_step(method, batch_rows(batch, [i for i, _, _ in rows]), share)
        buffers = {}
        for name, b in got["buffers"].items():  # every process's, to compare
            parts = [torch.empty_like(b) for _ in range(world)]
            dist.all_gather(parts, b.contiguous())
            buffers[name] = [part.numpy() for part in parts]
        for g in got["grads"].values():
            dist.all_reduce(g)
            g /= world
        losses = {}
        for name, value in got["losses"].items():
            t = torch.tensor(value, dtype=torch.float64)
            dist.all_reduce(t)
            losses[name] = float(t) / world
        # numpy, not tensors: a tensor put on the queue is shared through a file descriptor
        # of this process, gone once it exits before the test reads the queue
        results[method] = {"losses": losses, "grads": {k: v.numpy() for k, v in got["grads"].items()},
                           "buffers": buffers}
    if rank == 0:
        queue.put(results)
    dist.barrier()
    dist.destroy_process_group()
