"""A training run's settings, parsed from the run's JSON ``--params``.

A run (``train.runs.<name>`` in config.yaml) has a ``model`` block (:class:`ModelConfig`), a
``data`` block (:class:`DataConfig`), ``optim`` and ``trainer`` blocks, and bookkeeping keys
(``dataset``, ``folds``, ``kind``, ``source``, ``eval``) used by the workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from dfer.devices import resolve_device
from dfer.model.config import ModelConfig
from dfer.strict_config import from_mapping
from dfer.train.data import DataConfig

_BOOKKEEPING = {"dataset", "datasets", "folds", "kind", "source", "eval", "device", "description"}


def _strict(cls: type, data: Mapping[str, Any] | None, where: str) -> Any:
    return from_mapping(cls, data, f"{where} key")


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1  # of all optimizer steps, linear warmup then cosine decay
    min_lr_ratio: float = 0.01


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    seed: int = 0
    precision: str = "auto"  # auto: bf16-mixed / 16-mixed on GPU, 32-true on CPU
    accelerator: str = "auto"  # auto | cpu | gpu
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1  # 0 = never validate during training
    limit_train_batches: int | float | None = None
    deterministic: bool = True


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
        )

    def resolved_device(self) -> str:
        return resolve_device(self.device if self.trainer.accelerator == "auto" else
                              {"gpu": "cuda", "cuda": "cuda"}.get(self.trainer.accelerator, "cpu"))

    def resolved_precision(self) -> str:
        if self.trainer.precision != "auto":
            return self.trainer.precision
        if self.resolved_device() == "cuda":
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "32-true"
