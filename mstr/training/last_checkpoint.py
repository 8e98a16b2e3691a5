"""`LastCheckpoint`: keeps `last.ckpt` a point a killed or interrupted run resumes from exactly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint

from mstr.errors import Interrupted
from mstr.training.rng import rng_states, set_rng_states
from mstr.training.signals import STOP

log = logging.getLogger(__name__)


class LastCheckpoint(Checkpoint):
    """Keeps `<dirpath>/last.ckpt` a point that training resumes from exactly.

    Saved every `every_n_train_steps` optimizer steps (mid-epoch, never on an epoch's last batch, where
    validation follows), at the end of every epoch after validation, early stopping and the best
    checkpoint have updated, and on SIGINT / SIGTERM at the next of these points (stopping after an
    epoch end's save waits until Lightning has logged the epoch: at the next epoch's start, or the end
    of training). Saves are atomic
    (written aside, then renamed), so a kill never leaves half a file. Besides what Lightning stores
    (weights, optimizer, scheduler, loop progress, callback states), it carries what an exact resume
    also needs: the RNG states, the position in the training order (epoch, batches done), handed to
    the DataModule's `resume_train_at`, and whether early stopping had stopped training.
    """

    def __init__(self, dirpath: Optional[str] = None, filename: str = "last", every_n_train_steps: int = 50):
        if every_n_train_steps is not None and every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps={every_n_train_steps}: must be >= 0 (0: at epoch ends only)")
        self.dirpath = dirpath
        self.filename = filename
        self.every_n_train_steps = int(every_n_train_steps or 0)
        self._trainer: Optional[pl.Trainer] = None
        self._position: Optional[tuple[int, int]] = None
        self._should_stop = False
        self._restored_rng: Optional[dict] = None

    @property
    def path(self) -> Path:
        return Path(self.dirpath) / f"{self.filename}.ckpt"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if trainer.ckpt_path:  # what an interruption before the first save leaves to resume from
            STOP.last_checkpoint = str(trainer.ckpt_path)
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        # Save after every other callback's epoch-end update (early stopping, best checkpoint).
        trainer.callbacks = [cb for cb in trainer.callbacks if cb is not self] + [self]  # a new list: hooks
        # may be iterating over the old one right now

    # ---- saving ------------------------------------------------------------------------------
    def _inactive(self, trainer: pl.Trainer) -> bool:
        return bool(trainer.fast_dev_run) or trainer.sanity_checking

    def _save(self, trainer: pl.Trainer, position: tuple[int, int]) -> None:
        self._position = position
        self._should_stop = bool(trainer.should_stop)
        trainer.save_checkpoint(str(self.path), weights_only=False)  # written aside, then renamed
        STOP.last_checkpoint = str(self.path)

    def _stop_if_requested(self, trainer: pl.Trainer) -> None:
        if STOP.requested:
            raise Interrupted(STOP.signum, str(self.path), saved=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restored_rng is not None:  # after the loaders are built, before the first resumed step
            set_rng_states(self._restored_rng)
            self._restored_rng = None
        STOP.claim_sigterm()
        STOP.deferring = not self._inactive(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._inactive(trainer):
            return
        done = batch_idx + 1
        val_every = trainer.val_check_batch
        if done >= trainer.num_training_batches or (isinstance(val_every, int) and done % val_every == 0):
            return  # validation follows this batch: save after it (at the epoch end or the next batch)
        if done % trainer.accumulate_grad_batches:
            return  # gradients are being accumulated: not a point to save
        every = self.every_n_train_steps
        if STOP.requested or (every and trainer.global_step % every == 0):
            self._save(trainer, (trainer.current_epoch, done))
        self._stop_if_requested(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._inactive(trainer):
            return
        self._save(trainer, (trainer.current_epoch + 1, 0))
        # Not yet: Lightning logs the epoch's training metrics after these hooks, and the resumed run
        # starts at the next epoch, so stopping here would lose this epoch's row for good.

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._inactive(trainer):
            self._stop_if_requested(trainer)  # a request made after the last epoch's save

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        STOP.deferring = False
        if not self._inactive(trainer):
            self._stop_if_requested(trainer)  # the last epoch, or early stopping, ended training

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        STOP.deferring = False

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        STOP.deferring = False

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        position = None if self._position is None else list(self._position)
        return {"position": position, "should_stop": self._should_stop, "rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        trainer = self._trainer
        position = state_dict.get("position")
        if position is not None and trainer is not None:
            dm = trainer.datamodule
            if dm is not None and hasattr(dm, "resume_train_at"):
                # with several processes each took `batches` batches of the one (shared) order
                dm.resume_train_at(position[0], position[1] * trainer.world_size)
            log.info("resuming at epoch %d after %d batches of it", position[0], position[1])
        if trainer is not None and state_dict.get("should_stop"):
            trainer.should_stop = True  # early stopping had ended training: do not train another epoch
        self._restored_rng = state_dict.get("rng")
