"""Train one fold in this process and SIGKILL it as epoch K starts (tests of resuming).

``python tests/support/kill_training.py RESULTS DATASET OUT PARAMS_JSON K``: runs
:func:`dfer.train.fit.train_fold` on fold 1 and kills the process for real (``SIGKILL``: no
Python cleanup, no Lightning teardown) at the start of epoch ``K``, after the resume file of
epoch ``K - 1`` was written; the exit status is then -9.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import lightning as L

from dfer.train.fit import train_fold


class KillAtEpoch(L.Callback):
    """SIGKILL this process when epoch ``epoch`` starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    results, dataset, out, params, epoch = sys.argv[1:6]
    train_fold(results, dataset, 1, "t", json.loads(params), out, callbacks=[KillAtEpoch(int(epoch))])
    raise SystemExit(f"training finished before epoch {epoch}: nothing was killed")
