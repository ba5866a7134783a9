"""Lightning wrappers: one training module for every method, and the per-fold data module.

:class:`DFERModule` trains any registered method (dfer.methods.registry): it needs only what
every model core has (``out.logits``, ``out.probabilities()``, ``losses(out, y)["loss"]``) and
what the method's spec declares (the batch keys its forward takes, its parameter groups and
stage schedule, its checkpoint policy; dfer.methods.api). It logs whatever losses and extras the
method returns.

Both run alike in one process and in several (DDP): the data module hands each process its
rows of every global batch (dfer.train.distributed), the module passes the method a
:class:`BatchShare` (or gathers the per-clip outputs its loss reads) when there is more than
one process, gathers the validation predictions of all processes before computing UAR / WAR,
and keeps only the method's checkpoint state (tunable weights, or the whole model for a method
that tunes its backbone) in Lightning's checkpoints (the resume file, dfer.train.resume).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from dfer.methods import api
from dfer.methods.checkpoint import method_state
from dfer.methods.registry import MethodSpec, spec_of_model
from dfer.model.batch_share import BatchShare
from dfer.train.config import RunConfig
from dfer.train.data import ClipDataset, ClipTable, Renderer, fold_split
from dfer.train.distributed import EpochOrder, MarkedRows, RankBatches, RankSlices, collate_rows
from dfer.train.inputs import needs_for
from dfer.train.metrics import confusion_matrix, uar, war
from dfer.train.optim import build_stage
from dfer.train.resume import CHECKPOINT_KEY

log = logging.getLogger(__name__)


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """FineCLIPER's forward keyword arguments found in a collated batch (kept for callers of
    the FineCLIPER-only module; :func:`dfer.methods.api.model_inputs` reads any method's)."""
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
        self.needs = needs_for(cfg.model)  # the run's method config
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

    def _rank_world(self) -> tuple[int, int]:
        """(global rank, processes) of the trainer this module is attached to; (0, 1) alone."""
        trainer = self.trainer
        return (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)

    def _loader(self, ds: ClipDataset, batches: RankBatches | RankSlices) -> DataLoader:
        """Batches of :data:`dfer.train.distributed.Row` keys (rows marked valid or padding)."""
        gen = torch.Generator().manual_seed(self.cfg.trainer.seed)  # worker seeds only
        return DataLoader(
            MarkedRows(ds), batch_sampler=batches, num_workers=self.cfg.data.num_workers,
            collate_fn=collate_rows, generator=gen, pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        """This process's rows of every global batch of ``data.batch_size`` clips, in an order
        drawn from (seed, epoch) alone."""
        assert self.train_set is not None
        order = EpochOrder(len(self.train_set), self.cfg.trainer.seed, shuffle=True)
        return self._loader(self.train_set, RankBatches(order, self.cfg.data.batch_size, *self._rank_world()))

    def val_dataloader(self) -> DataLoader:
        """This process's slice of the test clips, padded to the same length on every process."""
        assert self.test_set is not None
        order = EpochOrder(len(self.test_set), self.cfg.trainer.seed, shuffle=False)
        size = self.cfg.data.eval_batch_size or self.cfg.data.batch_size
        return self._loader(self.test_set, RankSlices(order, size, *self._rank_world()))


class DFERModule(L.LightningModule):
    """Trains any method's model (its spec says how); validation logs UAR / WAR;
    ``predict_step`` serves evaluation (``cfg`` is needed for training only).

    ``start_epoch``: for a resumed run, the epoch its resume file was saved at, so that
    :meth:`configure_optimizers` builds that epoch's stage, whose optimiser state the file holds
    (a fold killed at a stage boundary would otherwise load one stage's state into the next
    stage's optimiser); the epoch it continues at enters its own stage in
    :meth:`on_train_epoch_start`.
    """

    def __init__(self, model: torch.nn.Module, cfg: RunConfig | None = None, digest: str | None = None,
                 spec: MethodSpec | None = None, start_epoch: int = 0) -> None:
        super().__init__()
        self.model = model
        self.spec = spec or spec_of_model(model)
        self.cfg = cfg
        #: what the fold computes (dfer.train.resume.run_digest), stored in every resume file
        self.digest = digest
        self.start_epoch = int(start_epoch)
        #: the epoch whose stage configure_optimizers builds
        self._optim_epoch = int(start_epoch)
        #: the index of the optimiser stage being trained (None before the first)
        self.stage: int | None = None
        # the resume file holds the method's checkpoint state only; on_load_checkpoint checks its keys
        self.strict_loading = False
        self._val_preds: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self._val_loss: list[torch.Tensor] = []
        #: the logged values of the epoch a resumed run started from (on_load_checkpoint)
        self.resumed_metrics: dict[str, float] = {}
        #: training seconds of this fold's earlier, interrupted jobs (from the resume file), so
        #: that train.json reports the fold's whole training time, not only the last job's
        self.seconds_before = 0.0
        self._fit_started: float | None = None
        #: test-time views averaged by predict_step (evaluation sets them from the data block)
        self.test_views: tuple[str, ...] = tuple(cfg.data.test_views) if cfg is not None else ("identity",)

    def _share(self, batch: dict[str, Any]) -> BatchShare | None:
        """This process's share of the global batch when several processes train; None alone
        (the model then computes exactly what it always did)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return None
        return BatchShare(batch["valid"].to(self.device), int(batch["n_global"]))

    def on_train_epoch_start(self) -> None:
        # the one place the epoch reaches the dataset: the loader is built once, so random
        # flips / frame draws differ per epoch only through this (in-process loading sees it
        # at once; worker processes are created after this hook, at the epoch's first batch)
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and getattr(dm, "train_set", None) is not None:
            dm.train_set.epoch = self.current_epoch
        api.start_epoch(self.model, self.spec, self.current_epoch)
        self._enter_stage(self.current_epoch)

    def _groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return api.parameter_groups(self.model, self.spec)

    def _enter_stage(self, epoch: int) -> None:
        """At the first epoch of a new optimiser stage: a new optimiser and scheduler
        (dfer.train.optim), replacing the previous stage's in the trainer (the strategy calls
        :meth:`configure_optimizers` again, for this epoch)."""
        from dfer.train.optim import stage_at

        assert self.cfg is not None
        if self.stage is None or stage_at(self.cfg.optim.resolved_stages(), epoch) == self.stage:
            return
        self._optim_epoch = epoch
        self.trainer.strategy.setup_optimizers(self.trainer)
        log.info("epoch %d: optimiser stage %d (groups %s)", epoch, self.stage + 1 if self.stage is not None else 0,
                 self.cfg.optim.resolved_stages()[self.stage or 0].groups or "all")

    def _total_steps(self) -> int:
        return max(1, int(self.trainer.estimated_stepping_batches))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        share = self._share(batch)
        out = api.forward(self.model, self.spec, batch, share)
        losses = api.losses(self.model, self.spec, out, batch["label"], share)
        # with several processes each logs its share (or the global value); their mean
        # (sync_dist) is the batch's value
        sync = share is not None
        bs = share.n_global if share is not None else len(batch["label"])
        for name, value in losses.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True, batch_size=bs,
                     prog_bar=name == "loss", sync_dist=sync)
        correct = (out.logits.argmax(-1) == batch["label"]).float()
        acc = correct.mean() if share is None else share.mean_share(correct)
        self.log("train/acc", acc, on_step=False, on_epoch=True, batch_size=bs, prog_bar=True, sync_dist=sync)
        for name, value in api.extras(self.model, self.spec, out).items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=bs)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Keep every row's prediction, label (-1 for padding) and class loss; the metrics are
        computed once per epoch from all processes' rows."""
        out = api.forward(self.model, self.spec, batch)
        valid = batch["valid"].to(self.device)
        ce = api.clip_loss(self.model, self.spec, out, batch["label"]).detach().float()
        self._val_preds.append(out.logits.argmax(-1))
        self._val_targets.append(torch.where(valid, batch["label"], torch.full_like(batch["label"], -1)))
        self._val_loss.append(torch.where(valid, ce, torch.zeros_like(ce)))

    def on_validation_epoch_end(self) -> None:
        """UAR / WAR / mean class loss over the test clips of every process (padding dropped):
        each process holds as many rows, so the gather needs no sizes."""
        if not self._val_preds:
            return
        preds, targets = torch.cat(self._val_preds), torch.cat(self._val_targets)
        loss = torch.cat(self._val_loss)
        self._val_preds.clear()
        self._val_targets.clear()
        self._val_loss.clear()
        distributed = self.trainer.world_size > 1
        if distributed:
            preds, targets, loss = (self.all_gather(t).reshape(-1) for t in (preds, targets, loss))
        keep = targets >= 0
        y_true, y_pred = targets[keep].cpu().numpy(), preds[keep].cpu().numpy()
        cm = confusion_matrix(y_true, y_pred, len(self.model.labels))
        # every process computed the same numbers; syncing them with max keeps them exact (a
        # mean over 3 processes may round) and keeps Lightning from warning
        same = {"sync_dist": distributed, "reduce_fx": "max"}
        self.log("val/loss", loss.sum() / keep.sum(), **same)
        self.log("val/uar", uar(cm), prog_bar=True, **same)
        self.log("val/war", war(cm), prog_bar=True, **same)

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()

    def trained_seconds(self) -> float:
        """This fold's training seconds so far: earlier jobs' plus this job's."""
        started = self._fit_started
        return self.seconds_before + (time.perf_counter() - started if started is not None else 0.0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Lightning's checkpoint (the resume file) keeps the method's checkpoint state only
        (FineCLIPER: the tunable state; the frozen backbone, 600 MB on ViT-B/16, is re-created
        from its source), and torch's random states and this fold's digest are added."""
        names = set(method_state(self.model, self.spec))
        # BatchNorm counters sit beside the running statistics a tunable state keeps
        names |= {n for n, _ in self.model.named_buffers() if n.endswith("num_batches_tracked")
                  and n.rsplit(".", 1)[0] + ".running_mean" in names}
        keep = {f"model.{name}" for name in names}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        # the epoch's logged values: a run resumed after its last epoch trains nothing more,
        # and its train.json still reports them
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()
                   if torch.is_tensor(v) and v.numel() == 1}
        checkpoint[CHECKPOINT_KEY] = {"digest": self.digest, "rng": rng, "metrics": metrics,
                                      "seconds": self.trained_seconds()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint that does not hold exactly this model's tunable state (the
        frozen backbone is not in it, so Lightning loads non-strictly); restore random states."""
        expected = {f"model.{name}" for name in method_state(self.model, self.spec)
                    if not name.endswith("num_batches_tracked")}
        found = {k for k in checkpoint.get("state_dict", {}) if not k.endswith("num_batches_tracked")}
        if found != expected:
            missing, extra = sorted(expected - found), sorted(found - expected)
            raise ValueError(f"resume checkpoint does not fit this model: missing {missing[:5]}, unexpected {extra[:5]}")
        entry = checkpoint.get(CHECKPOINT_KEY) or {}
        self.resumed_metrics = dict(entry.get("metrics") or {})
        self.seconds_before = float(entry.get("seconds") or 0.0)
        rng = entry.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Class probabilities of a batch and what explains them, moved to the CPU.

        ``trainer.predict`` (evaluation) collects these; device, precision and no-grad come
        from the trainer.
        """
        probs, out = api.view_outputs(self.model, self.spec, batch, self.test_views)
        probs = probs.cpu()
        scores = getattr(out, "level_scores", None)
        return {"clip_id": list(batch["clip_id"]), "label": batch["label"].cpu(), "probs": probs,
                "explained": explanations(out, len(probs)),
                "score_levels": list(scores) if isinstance(scores, Mapping) else []}

    def configure_optimizers(self) -> dict[str, Any]:
        """The optimiser and scheduler of the stage of the epoch training starts at (a resumed
        run: the epoch its resume file was saved at); later stages are entered by
        :meth:`_enter_stage`."""
        if self.cfg is None:
            raise ValueError("training needs the run config: DFERModule(model, cfg)")
        world = self.trainer.world_size if self._trainer is not None else 1
        built = build_stage(self.cfg.optim, self._groups(), self._optim_epoch, self.cfg.trainer.max_epochs,
                            self._total_steps(), alone=world == 1)
        api.enter_stage(self.model, self.spec, built.config, alone=world == 1)
        self.stage = built.index
        if built.scheduler is None:
            return {"optimizer": built.optimizer}
        return {"optimizer": built.optimizer, "lr_scheduler": built.scheduler}


#: the name the training module had while FineCLIPER was the only method
FineCLIPERModule = DFERModule


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
