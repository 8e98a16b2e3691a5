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
        self.earlier_fit_s = 0.0  # a resumed run: the fit's wall time before it was interrupted
        self._since: Optional[float] = None  # start of the running stretch of training
        self._paused = False  # validation interrupted a training epoch
        self._fit_start: Optional[float] = None

    def state_dict(self) -> dict[str, float]:
        """Kept in every checkpoint, so that a run resumed from one counts the windows and seconds of the
        stretch before the interruption: its figures are those of the whole training, not of its end."""
        now = time.perf_counter()
        running = now - self._since if self._since is not None else 0.0
        fit = now - self._fit_start if self._fit_start is not None else 0.0
        return {"windows": self.windows, "seconds": self.seconds + running, "fit_s": self.earlier_fit_s + fit}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.windows, self.seconds = int(state["windows"]), float(state["seconds"])
        self.earlier_fit_s = float(state.get("fit_s", 0.0))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()

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


def earlier_fit_s(trainer: pl.Trainer) -> float:
    """The training wall time a resumed fit had spent before its interruption (0 for a fresh fit)."""
    return next((c.earlier_fit_s for c in trainer.callbacks if isinstance(c, TrainingThroughput)), 0.0)


def throughput_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """`time/train_windows_per_s` of a fitted trainer ({} without a TrainingThroughput callback)."""
    for callback in trainer.callbacks:
        if isinstance(callback, TrainingThroughput) and callback.windows_per_s is not None:
            return {"time/train_windows_per_s": callback.windows_per_s}
    return {}
