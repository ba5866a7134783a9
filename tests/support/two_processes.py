"""Run a worker in two spawned processes that talk over gloo (the gradient-share tests).

``spawn``, not fork: a fork after Lightning trained in the same pytest process can hang in
torch's thread pool. Each worker is called as ``worker(rank, world_size, port, queue)``; rank 0
puts one result on the queue, which is returned once both processes ended cleanly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from support.ports import free_port


def run_in_two_processes(worker: Callable[..., None], timeout_s: float = 300) -> Any:
    """What rank 0 of ``worker`` puts on its queue; each process must exit with status 0."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(rank, 2, port, queue)) for rank in range(2)]
    for p in procs:
        p.start()
    try:
        result = queue.get(timeout=timeout_s)
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    return result
