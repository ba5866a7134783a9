"""Lightning wrappers: the FineCLIPER training module and the per-fold data module."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from dfer.model.fineclip import FineCLIPER
from dfer.train.config import RunConfig
from dfer.train.data import (
    ClipDataset,
    ClipTable,
    Needs,
    Renderer,
    collate,
    fold_split,
    load_clip_table,
)
from dfer.train.metrics import confusion_matrix, uar, war

log = logging.getLogger(__name__)


def needs_for(model_cfg: Any) -> Needs:
    """Upstream artifacts a model config reads."""
    return Needs(parsing=model_cfg.use_parsing, landmarks=model_cfg.use_landmarks,
                 captions=model_cfg.use_captions)


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :meth:`FineCLIPER.forward` found in a collated batch."""
    return {k: batch[k] for k in ("frames", "parsing", "landmarks", "captions") if k in batch}


class FoldDataModule(L.LightningDataModule):
    """Fold ``k``: trains on ``test_fold != k``, validates/tests on ``test_fold == k``."""

    def __init__(
        self,
        results: str | Path,
        dataset: str,
        fold: int,
        cfg: RunConfig,
        image_size: int,
        renderers: tuple[Renderer, Renderer] | None = None,
        table: ClipTable | None = None,
    ) -> None:
        super().__init__()
        self.results, self.dataset, self.fold, self.cfg = Path(results), dataset, int(fold), cfg
        self.image_size = image_size
        self.renderers = renderers
        self.needs = needs_for(cfg.model)
        self.table = table
        self.train_set: ClipDataset | None = None
        self.test_set: ClipDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.table is None:
            self.table = load_clip_table(self.results, self.dataset, self.needs)
        train = fold_split(self.table.clips, self.fold, "train")
        test = fold_split(self.table.clips, self.fold, "test")
        if train.empty:
            raise ValueError(f"{self.dataset} fold {self.fold}: no training clips (test_fold != {self.fold})")
        log.info("%s fold %d: %d training clips, %d test clips", self.dataset, self.fold, len(train), len(test))
        common = dict(table=self.table, needs=self.needs, cfg=self.cfg.data, image_size=self.image_size,
                      seed=self.cfg.trainer.seed, renderers=self.renderers)
        self.train_set = ClipDataset(self.results, self.dataset, train, train=True, **common)
        self.test_set = ClipDataset(self.results, self.dataset, test, train=False, **common)

    def _loader(self, ds: ClipDataset, batch_size: int, shuffle: bool) -> DataLoader:
        workers = self.cfg.data.num_workers
        gen = torch.Generator().manual_seed(self.cfg.trainer.seed)
        return DataLoader(
            ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate,
            generator=gen, drop_last=False, pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        if self.trainer is not None:
            self.train_set.epoch = self.trainer.current_epoch
        return self._loader(self.train_set, self.cfg.data.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        assert self.test_set is not None
        return self._loader(self.test_set, self.cfg.data.eval_batch_size or self.cfg.data.batch_size, False)


class FineCLIPERModule(L.LightningModule):
    """Optimises the tunable parts of :class:`FineCLIPER`; validation logs UAR / WAR."""

    def __init__(self, model: FineCLIPER, cfg: RunConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self._val_preds: list[np.ndarray] = []
        self._val_targets: list[np.ndarray] = []

    def on_train_epoch_start(self) -> None:
        # the loader is built once; tell the dataset the epoch so random flips differ per epoch
        # (in-process loading sees it at once, worker processes get it when they are re-created)
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and getattr(dm, "train_set", None) is not None:
            dm.train_set.epoch = self.current_epoch

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.model(**model_inputs(batch))
        losses = self.model.losses(out, batch["label"])
        bs = len(batch["label"])
        for name, value in losses.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True, batch_size=bs,
                     prog_bar=name == "loss")
        acc = (out.logits.argmax(-1) == batch["label"]).float().mean()
        self.log("train/acc", acc, on_step=False, on_epoch=True, batch_size=bs, prog_bar=True)
        self.log("train/logit_scale", self.model.log_logit_scale.exp(), on_step=False, on_epoch=True,
                 batch_size=bs)
        for level, w in zip(self.model.fused_levels, out.modality_weights, strict=True):
            self.log(f"train/weight_{level}", w, on_step=False, on_epoch=True, batch_size=bs)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.model(**model_inputs(batch))
        losses = self.model.losses(out, batch["label"])
        self.log("val/loss", losses["ce"], on_epoch=True, batch_size=len(batch["label"]))
        self._val_preds.append(out.logits.argmax(-1).cpu().numpy())
        self._val_targets.append(batch["label"].cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        if not self._val_preds:
            return
        cm = confusion_matrix(np.concatenate(self._val_targets), np.concatenate(self._val_preds),
                              len(self.model.labels))
        self.log("val/uar", uar(cm), prog_bar=True)
        self.log("val/war", war(cm), prog_bar=True)
        self._val_preds.clear()
        self._val_targets.clear()

    def configure_optimizers(self) -> dict[str, Any]:
        params = list(self.model.tunable_parameters().values())
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.optim.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.cfg.optim.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.cfg.optim.warmup_fraction * total)
        floor = self.cfg.optim.min_lr_ratio

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
