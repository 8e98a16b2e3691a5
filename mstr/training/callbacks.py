"""Training throughput, measured by a Lightning callback so that every run (teacher or student, one
device or DDP) reports the same figure in its metrics.json."""

from __future__ import annotations

import time
from typing import Any, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class TrainingThroughput(Callback):
    """Training windows per second over all ranks: the windows of every training batch divided by the
    wall time of the training epochs, validation excluded. Data loading, the optimizer step, logging
    and mid-epoch checkpoints count: the figure is what the training loop delivers, not the model's
    arithmetic alone (the compression report measures that)."""

    def __init__(self) -> None:
        self.windows = 0
        self.seconds = 0.0
        self._since: Optional[float] = None  # start of the running stretch of training
        self._paused = False  # validation interrupted a training epoch

    def _pause(self) -> bool:
        if self._since is None:
            return False
        self.seconds += time.perf_counter() - self._since
        self._since = None
        return True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.windows += len(batch[1]) * trainer.world_size  # each rank trains on its own share

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._paused = self._pause()  # the sanity check runs before any epoch: nothing to pause

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._paused:
            self._since, self._paused = time.perf_counter(), False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pause()

    @property
    def windows_per_s(self) -> Optional[float]:
        return self.windows / self.seconds if self.seconds > 0 and self.windows else None


def throughput_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """`time/train_windows_per_s` of a fitted trainer ({} without a TrainingThroughput callback)."""
    for callback in trainer.callbacks:
        if isinstance(callback, TrainingThroughput) and callback.windows_per_s is not None:
            return {"time/train_windows_per_s": callback.windows_per_s}
    return {}
