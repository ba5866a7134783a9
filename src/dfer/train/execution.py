"""Which keys of a training run decide only where or how fast it runs, and the job's workers.

A run's ``model``, ``data``, ``optim`` and ``trainer`` blocks decide what a fold learns,
except the keys below: the device, whether the frozen ViT sees the visual levels in one
batched forward, the DataLoader's worker processes and open-shard cache, the evaluation batch
size (the model is in eval mode, clip by clip) and how Lightning spreads a fold over GPUs and
nodes. Those are not params of the train / evaluate rules
(``dfer.core.execution_keys``), so moving a run to other GPUs re-trains nothing.

Mixed precision is decided by ``trainer.precision``; its default ``auto`` trains in bf16 on a
GPU and float32 on the CPU, so pin it where results must not depend on the device.

Standard library only: the Snakefile reads this while it is parsed (no torch there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Keys of a run (dotted: block.key) that do not change what a fold learns or how it scores.
RUN_EXECUTION_KEYS: tuple[str, ...] = (
    "device",
    "model.batch_levels",  # the visual levels in one batched ViT forward or one at a time
    "data.num_workers", "data.eval_batch_size", "data.max_open_shards",
    "trainer.accelerator", "trainer.devices", "trainer.strategy", "trainer.num_nodes",
)

#: Keys of a run that decide how a trained fold is *scored*, not what it learns: they are params
#: of the evaluate / zero-shot rules and not of the train rule, so changing one re-scores the
#: folds without re-training them (``data.unscored_clips``: a test clip that cannot be scored
#: counts as wrong, or is left out).
RUN_SCORING_KEYS: tuple[str, ...] = ("data.unscored_clips",)

#: The keys of a run that a fold's job reads; ``datasets``, ``folds`` and ``description``
#: only say which jobs exist.
RUN_KEYS: tuple[str, ...] = ("model", "data", "optim", "trainer", "device")

#: Threads of a train / evaluate job when nothing else says: one process feeding the model
#: and three DataLoader workers.
DEFAULT_THREADS = 4


def run_devices(run: Mapping[str, Any]) -> int:
    """GPUs one fold's job uses on one node: ``trainer.devices`` (an int; default 1).

    ``0`` when the run is pinned to the CPU (``device: cpu`` or ``trainer.accelerator: cpu``).
    """
    trainer = run.get("trainer") or {}
    if run.get("device", "auto") == "cpu" or trainer.get("accelerator") == "cpu":
        return 0
    devices = trainer.get("devices", 1)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"trainer.devices must be a number of GPUs >= 1, got {devices!r}")
    return devices


def run_nodes(run: Mapping[str, Any]) -> int:
    """Nodes one fold's job spans: ``trainer.num_nodes`` (default 1)."""
    return int((run.get("trainer") or {}).get("num_nodes", 1))


def workers_for_threads(threads: int, processes: int = 1) -> int:
    """DataLoader workers per process for a job given ``threads`` CPUs in all.

    Each of the job's ``processes`` (one per GPU under DDP) keeps one thread for itself and
    hands the rest of its share to worker processes: 4 threads, one process -> 3 workers.
    """
    return max(0, int(threads) // max(1, int(processes)) - 1)


def eval_devices(run: Mapping[str, Any]) -> int:
    """GPUs of an evaluate / zero-shot job: one process scores the clips, on one GPU (0 when
    the run is pinned to the CPU), whatever ``trainer.devices`` the fold trained on."""
    return min(1, run_devices(run))


def job_threads(run: Mapping[str, Any], processes: int | None = None) -> int:
    """The threads a fold's job asks Snakemake for: what its processes and workers use.

    ``data.num_workers`` set in the run: that many workers plus the process itself, per
    process; else :data:`DEFAULT_THREADS` per process (``--set-threads train=N`` overrides;
    the workers then follow N, :func:`job_settings`). ``processes``: one per GPU of a train
    job by default (DDP); 1 for an evaluate job.
    """
    if processes is None:
        processes = max(1, run_devices(run))
    workers = (run.get("data") or {}).get("num_workers")
    per_process = DEFAULT_THREADS if workers is None else int(workers) + 1
    return per_process * processes


def _with_workers(data: Mapping[str, Any] | None, run: Mapping[str, Any], threads: int) -> dict[str, Any]:
    data = dict(data or {})
    if data.get("num_workers") is None:
        data["num_workers"] = workers_for_threads(threads, max(1, run_devices(run)))
    return data


def result_settings(run: Mapping[str, Any]) -> dict[str, Any]:
    """What changes a fold's result: the run's keys a job reads, less ``RUN_EXECUTION_KEYS``
    (the train rule's ``params``)."""
    from dfer.core.execution_keys import result_part

    return result_part({k: run[k] for k in RUN_KEYS if k in run},
                       (*RUN_EXECUTION_KEYS, *RUN_SCORING_KEYS))


def scoring_settings(run: Mapping[str, Any]) -> dict[str, Any]:
    """The run's :data:`RUN_SCORING_KEYS` that it sets (the evaluate rules' ``params``)."""
    from dfer.core.execution_keys import split

    return split({k: run[k] for k in RUN_KEYS if k in run}, RUN_SCORING_KEYS)[1]


def job_settings(run: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """What a fold's train job is given (its ``--params``): the run's keys, with the
    DataLoader workers following the job's ``threads`` unless ``data.num_workers`` is set."""
    settings = {k: run[k] for k in RUN_KEYS if k in run}
    settings["data"] = _with_workers(settings.get("data"), run, threads)
    return settings


def eval_settings(run: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """What an evaluate job is given besides its checkpoint: where it runs and how fast
    (device, the execution keys of ``data``, workers following ``threads``) and the run's
    :data:`RUN_SCORING_KEYS`. Everything else that decides the scores comes from the
    checkpoint, which stores the run it was trained with."""
    from dfer.core.execution_keys import split

    _, execution = split({k: run[k] for k in RUN_KEYS if k in run}, RUN_EXECUTION_KEYS)
    data = {**(execution.get("data") or {}), **(scoring_settings(run).get("data") or {})}
    if data.get("num_workers") is None:
        data["num_workers"] = workers_for_threads(threads, 1)  # one process scores the clips
    return {"device": run.get("device", "auto"), "data": data}
