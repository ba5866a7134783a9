"""Lightning wrappers: the FineCLIPER training module and the per-fold data module."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from dfer.model.fineclip import FineCLIPER
from dfer.train.config import RunConfig
from dfer.train.data import ClipDataset, ClipTable, Renderer, collate, fold_split
from dfer.train.inputs import needs_for
from dfer.train.metrics import confusion_matrix, uar, war

log = logging.getLogger(__name__)


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :meth:`FineCLIPER.forward` found in a collated batch."""
    return {k: batch[k] for k in ("frames", "parsing", "landmarks", "captions") if k in batch}


class FoldDataModule(L.LightningDataModule):
    """Fold ``k``: trains on ``test_fold != k``, validates/tests on ``test_fold == k``."""

    def __init__(
        self,
        table: ClipTable,
        fold: int,
        cfg: RunConfig,
        image_size: int,
        renderers: tuple[Renderer, Renderer] | None = None,
    ) -> None:
        super().__init__()
        if table.inputs is None:
            raise ValueError("the clip table carries no input files; build it with read_clip_table")
        self.table, self.fold, self.cfg = table, int(fold), cfg
        self.dataset = table.inputs.dataset
        self.image_size = image_size
        self.renderers = renderers
        self.needs = needs_for(cfg.model)
        self.train_set: ClipDataset | None = None
        self.test_set: ClipDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Build the fold's datasets (called by Lightning; the table is read before, by the
        caller, which checks the fold's classes on it)."""
        train = fold_split(self.table.clips, self.fold, "train")
        test = fold_split(self.table.clips, self.fold, "test")
        if train.empty:
            raise ValueError(f"{self.dataset} fold {self.fold}: no training clips (test_fold != {self.fold})")
        log.info("%s fold %d: %d training clips, %d test clips", self.dataset, self.fold, len(train), len(test))
        common = dict(table=self.table, needs=self.needs, cfg=self.cfg.data, image_size=self.image_size,
                      seed=self.cfg.trainer.seed, renderers=self.renderers)
        self.train_set = ClipDataset(self.dataset, train, train=True, **common)
        self.test_set = ClipDataset(self.dataset, test, train=False, **common)

    def _loader(self, ds: ClipDataset, batch_size: int, shuffle: bool) -> DataLoader:
        workers = self.cfg.data.num_workers
        gen = torch.Generator().manual_seed(self.cfg.trainer.seed)
        return DataLoader(
            ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate,
            generator=gen, drop_last=False, pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return self._loader(self.train_set, self.cfg.data.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        assert self.test_set is not None
        return self._loader(self.test_set, self.cfg.data.eval_batch_size or self.cfg.data.batch_size, False)


class FineCLIPERModule(L.LightningModule):
    """Optimises the tunable parts of :class:`FineCLIPER`; validation logs UAR / WAR;
    ``predict_step`` serves evaluation (``cfg`` is needed for training only)."""

    def __init__(self, model: FineCLIPER, cfg: RunConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self._val_preds: list[np.ndarray] = []
        self._val_targets: list[np.ndarray] = []

    def on_train_epoch_start(self) -> None:
        # the one place the epoch reaches the dataset: the loader is built once, so random
        # flips / frame draws differ per epoch only through this (in-process loading sees it
        # at once; worker processes are created after this hook, at the epoch's first batch)
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

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Class probabilities of a batch and what explains them, moved to the CPU.

        ``trainer.predict`` (evaluation) collects these; device, precision and no-grad come
        from the trainer.
        """
        out = self.model(**model_inputs(batch))
        probs = out.probabilities().cpu()
        scores = getattr(out, "level_scores", None)
        return {"clip_id": list(batch["clip_id"]), "label": batch["label"].cpu(), "probs": probs,
                "explained": explanations(out, len(probs)),
                "score_levels": list(scores) if isinstance(scores, Mapping) else []}

    def configure_optimizers(self) -> dict[str, Any]:
        if self.cfg is None:
            raise ValueError("training needs the run config: FineCLIPERModule(model, cfg)")
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


def explanations(out: Any, batch_size: int) -> dict[str, np.ndarray]:
    """The optional prediction columns of one batch, from what the forward output exposes.

    Read by name, so a model without one of them simply writes fewer columns.
    ``modality_weights`` are learned per model, not per clip: repeated on every row so that a
    row explains its prediction on its own.
    """
    found: dict[str, np.ndarray] = {}
    for key in ("sim_pos", "sim_neg"):
        value = getattr(out, key, None)
        if torch.is_tensor(value):
            found[key] = value.float().cpu().numpy()
    weights = getattr(out, "modality_weights", None)
    if torch.is_tensor(weights):
        found["modality_weights"] = np.broadcast_to(weights.float().cpu().numpy(), (batch_size, weights.numel()))
    scores = getattr(out, "level_scores", None)
    if isinstance(scores, Mapping) and scores:
        found["level_scores"] = np.stack([v.float().cpu().numpy() for v in scores.values()], axis=1)
    return found
