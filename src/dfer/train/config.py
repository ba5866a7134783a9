"""A training run's settings, parsed from the run's JSON ``--params``: every block's
dataclass lives here, so one file says what a run can set.

A run (``train.runs.<name>`` in config.yaml) has a ``model`` block (:class:`ModelConfig`), a
``data`` block (:class:`DataConfig`), ``optim`` and ``trainer`` blocks, and bookkeeping keys
(``dataset``, ``folds``, ``kind``, ``source``, ``eval``) used by the workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from dfer.core.devices import resolve_device
from dfer.core.strict_config import from_mapping
from dfer.model.config import ModelConfig
from dfer.train.shard_reader import DEFAULT_MAX_OPEN

_BOOKKEEPING = {"dataset", "datasets", "folds", "kind", "source", "eval", "device", "description"}


def _strict(cls: type, data: Mapping[str, Any] | None, where: str) -> Any:
    return from_mapping(cls, data, f"{where} key")


@dataclass
class DataConfig:
    """How clips are fed to the model."""

    num_frames: int | None = None  # frames per clip (uniform subsample); None = all stored
    mid_frames: int | None = None  # frames for parsing / landmark images; None = num_frames
    image_size: int | None = None  # resize to this; None = the backbone's input size
    batch_size: int = 8
    eval_batch_size: int | None = None
    num_workers: int = 2
    flip: bool = True  # random horizontal flip while training
    #: training only: a random stored frame inside each of the ``num_frames`` equal segments
    #: instead of the evenly spaced ones (evaluation keeps those). The paper is silent: off.
    #: Needs more stored frames than ``num_frames`` (decode ``num_frames``) to have an effect.
    temporal_jitter: bool = False
    #: landmark dots and outlines drawn on the face frame (paper) instead of on black
    landmarks_on_face: bool = True
    #: shards of each kind (frames / parsing handles, landmark points, captions) kept open per
    #: process (LRU); bounds the memory of a pass over the data, whatever the dataset size
    max_open_shards: int = DEFAULT_MAX_OPEN
    #: a fold whose training set has a class with no clips, or a class that lost more than
    #: ``max_class_loss`` of its training clips in the preprocessing stages: ``error`` refuses
    #: to train (naming the classes and the stages that dropped them), ``warn`` trains anyway
    class_loss: Literal["error", "warn"] = "error"
    max_class_loss: float = 0.5
    #: clips decoded from one source frame (the frame repeated ``T`` times): ``keep`` (trained
    #: and scored, counted in the logs and the report) or ``drop`` (lost at decode, counted so)
    one_frame_clips: Literal["keep", "drop"] = "keep"
    #: evaluation: a test clip that cannot be scored (no frames after a failed decode, or
    #: another artifact the model reads at prediction missing) counts as a wrong prediction
    #: (``wrong``: metrics over the whole official test split, as published figures are) or is
    #: left out (``exclude``: metrics over the scored clips). metrics.json holds both.
    unscored_clips: Literal["wrong", "exclude"] = "wrong"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DataConfig:
        cfg = from_mapping(cls, data, "data config key")
        if cfg.class_loss not in ("error", "warn"):
            raise ValueError(f"data.class_loss must be 'error' or 'warn', got {cfg.class_loss!r}")
        if not 0 <= cfg.max_class_loss <= 1:
            raise ValueError(f"data.max_class_loss must be a share in 0..1, got {cfg.max_class_loss}")
        if cfg.one_frame_clips not in ("keep", "drop"):
            raise ValueError(f"data.one_frame_clips must be 'keep' or 'drop', got {cfg.one_frame_clips!r}")
        if cfg.unscored_clips not in ("wrong", "exclude"):
            raise ValueError(f"data.unscored_clips must be 'wrong' or 'exclude', got {cfg.unscored_clips!r}")
        if int(cfg.max_open_shards) < 1:
            raise ValueError(f"data.max_open_shards must be >= 1, got {cfg.max_open_shards}")
        return cfg


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1  # of all optimizer steps, linear warmup then cosine decay
    min_lr_ratio: float = 0.01


#: The strategies a run may name: ``auto`` (one process, or DDP when ``devices`` x ``num_nodes``
#: is more than 1) and ``ddp`` (Lightning's DDP, one process per device, started by Lightning on
#: one machine or by ``srun`` / ``torchrun`` across nodes). Spawn / fork variants are left out:
#: they pickle the data module (memory-mapped shards, a side store on local disk).
STRATEGIES = ("auto", "ddp")


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    seed: int = 0
    precision: str = "auto"  # auto: bf16-mixed / 16-mixed on any GPU, 32-true on CPU
    accelerator: str = "auto"  # auto | cpu | gpu
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1  # 0 = never validate during training
    limit_train_batches: int | float | None = None
    deterministic: bool = True
    #: where the run trains, not what it computes (WHERE_KEYS): processes per node (one per
    #: GPU, or CPU processes with ``accelerator: cpu``), the strategy, and nodes. Batches are
    #: global: ``data.batch_size`` clips per optimizer step however many processes share them.
    devices: int = 1
    strategy: str = "auto"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        for key in ("devices", "num_nodes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"trainer.{key} must be a whole number >= 1, got {value!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"trainer.strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.accelerator not in ("auto", "cpu", "gpu", "cuda"):
            raise ValueError(f"trainer.accelerator must be auto, cpu or gpu, got {self.accelerator!r}")

    @property
    def world_size(self) -> int:
        """Processes that train together: ``devices`` on each of ``num_nodes`` nodes."""
        return self.devices * self.num_nodes


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    device: str = "auto"  # auto | cpu | cuda: where training / evaluation runs
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> RunConfig:
        params = dict(params or {})
        unknown = sorted(set(params) - {"model", "data", "optim", "trainer"} - _BOOKKEEPING)
        if unknown:
            raise ValueError(
                f"unknown run key(s) {unknown}; expected model, data, optim, trainer, "
                f"{', '.join(sorted(_BOOKKEEPING))}"
            )
        return cls(
            model=ModelConfig.from_dict(params.get("model")),
            data=DataConfig.from_dict(params.get("data")),
            optim=_strict(OptimConfig, params.get("optim"), "optim"),
            trainer=_strict(TrainerConfig, params.get("trainer"), "trainer"),
            device=str(params.get("device", "auto")),
            raw=params,
        )._checked()

    def _checked(self) -> RunConfig:
        """Refuse a device setting that contradicts the process count (before any job runs)."""
        if self.device.startswith("cuda:") and self.trainer.world_size > 1:
            raise ValueError(
                f"device {self.device!r} pins one GPU but trainer.devices x trainer.num_nodes is "
                f"{self.trainer.world_size}; use device: cuda (or auto) and let the job's "
                "CUDA_VISIBLE_DEVICES say which GPUs")
        return self

    def resolved_device(self) -> str:
        return resolve_device(self.device if self.trainer.accelerator == "auto" else
                              {"gpu": "cuda", "cuda": "cuda"}.get(self.trainer.accelerator, "cpu"))

    def resolved_precision(self) -> str:
        """``trainer.precision``, or for ``auto`` what evaluation uses on the same device: any
        GPU (``cuda`` or ``cuda:N``) trains in mixed precision, the CPU in float32."""
        if self.trainer.precision != "auto":
            return self.trainer.precision
        return auto_precision(self.resolved_device())


def auto_precision(device: str) -> str:
    """Lightning precision for ``auto`` (training and evaluation alike): bf16 (or fp16) mixed
    precision on a GPU, full float32 on the CPU, where exact repeats are checked."""
    if device.startswith("cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def lightning_devices(device: str, devices: int = 1) -> tuple[str, int | list[int]]:
    """Lightning's ``(accelerator, devices)`` for a resolved device and a process count.

    ``cuda:N`` is the N-th visible GPU (Lightning reads ``devices=1`` as "the first GPU", so
    the index must be passed as a list); ``cuda`` / ``cpu`` take ``devices`` processes, on the
    GPUs the job can see (``CUDA_VISIBLE_DEVICES``, set per job by the workflow).
    """
    if device.startswith("cuda:"):
        if devices != 1:
            raise ValueError(f"device {device!r} pins one GPU; it cannot run {devices} processes")
        return "gpu", [int(device.split(":", 1)[1])]
    return ("gpu" if device.startswith("cuda") else "cpu"), devices


#: Keys of a run that decide where or how fast it trains, not what it computes, by block
#: ("" = the run's top level). Changing one must not change the result beyond floating-point
#: reduction order: ``devices`` / ``num_nodes`` split each global batch over processes and
#: gather what is computed over the batch (dfer.train.distributed); workers, open shards and the
#: validation batch size only change speed and memory. The workflow keeps them out of a job's
#: params (docs/cluster.md), and a resume file (dfer.train.resume) is valid across them.
WHERE_KEYS: dict[str, tuple[str, ...]] = {
    "": ("device",),
    "trainer": ("devices", "strategy", "num_nodes", "accelerator"),
    "data": ("num_workers", "max_open_shards", "eval_batch_size"),
}


def result_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A run's params without its :data:`WHERE_KEYS`: what its result depends on."""
    out = {k: v for k, v in params.items() if k not in WHERE_KEYS[""]}
    for block, keys in WHERE_KEYS.items():
        if block and isinstance(out.get(block), Mapping):
            out[block] = {k: v for k, v in out[block].items() if k not in keys}
    return out
