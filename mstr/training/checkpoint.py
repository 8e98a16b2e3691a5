"""Checkpoints: safe loading (`torch.load(weights_only=True)`, so a pickle payload can never run), and
`LastCheckpoint`, which keeps `last.ckpt` a point a killed or interrupted run resumes from exactly.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

from mstr.errors import DataError, Interrupted
from mstr.training.module import CHECKPOINT_FORMAT, FlowClassifier
from mstr.training.safeload import load_weights_only

log = logging.getLogger(__name__)


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, refusing anything that needs arbitrary code to unpickle."""
    path = Path(path)
    ckpt = load_weights_only(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise DataError(f"{path}: not an mstr checkpoint (no state_dict / hyper_parameters)")
    version = ckpt.get("mstr_format", 0)
    if version > CHECKPOINT_FORMAT:
        raise DataError(f"{path}: checkpoint format v{version} is newer than this mstr reads "
                        f"(v{CHECKPOINT_FORMAT}); upgrade mstr")
    return ckpt


def load_classifier(path: str | Path) -> FlowClassifier:
    """Rebuild the model a checkpoint was trained as (teacher or student) with its weights, in eval mode."""
    ckpt = read_checkpoint(path)
    hp = dict(ckpt["hyper_parameters"])
    hp.pop("distill", None)  # a distilled student scores like any classifier
    model = FlowClassifier(**hp)
    # Only the backbone: task-loss buffers and distillation-only parts (hint projections) stay behind.
    state = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("task_loss.")] + list(unexpected)
    if bad:
        raise DataError(f"{path}: weights do not fit the model its config describes ({bad[:3]})")
    return model.eval()


def check_signature(path: str | Path, found: dict, expected: dict, same_rows: bool = False,
                    keys: tuple[str, ...] = ("num_features", "classes", "window")) -> None:
    """A teacher (or evaluated model) must agree with the data on `keys`; with `same_rows`, also have
    learnt from exactly this config's train + validation rows, so that none of the test rows can have
    reached the student through it."""
    problems = []
    for key in keys:
        if found.get(key) != expected.get(key):
            problems.append(f"{key}: checkpoint {found.get(key)!r} vs data {expected.get(key)!r}")
    if problems:
        raise DataError(f"{path}: trained on different data than this config gives ("
                        + "; ".join(problems) + "); use a checkpoint trained with the same data config")
    if same_rows and found.get("dev_rows") != expected.get("dev_rows"):
        raise DataError(f"{path}: trained on other rows than this data config's train + validation split "
                        f"(fingerprint {found.get('dev_rows')} vs {expected.get('dev_rows')}: another split, file "
                        "or mstr version), so it may have seen the test rows; train the teacher with this "
                        "data config (leave distill.teacher_ckpt unset)")


def check_resumable(path: str | Path, module: FlowClassifier) -> dict:
    """A checkpoint to resume training from: safe to load, and made by the same model on the same data.
    Returns the checkpoint dict."""
    ckpt = read_checkpoint(path)
    found, expected = ckpt["hyper_parameters"], module.hparams
    problems = []
    for key in ("role", "num_features", "num_classes", "class_names", "data_signature", "backbone", "loss", "distill"):
        a, b = found.get(key), expected.get(key)
        if a != b:
            problems.append(f"{key}: checkpoint {a!r} vs config {b!r}")
    if problems:
        raise DataError(f"{path}: cannot resume: the checkpoint was trained with another config ("
                        + "; ".join(problems)[:400] + "); resume with the command that started the run")
    return ckpt


# ---- RNG states as plain data (loadable with weights_only=True) ---------------------------------
def rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ---- SIGINT / SIGTERM ----------------------------------------------------------------------------
class StopSignals:
    """SIGINT and SIGTERM during a job. While a `LastCheckpoint` trains, a signal is a request: the
    current step finishes, `last.ckpt` is saved, and `Interrupted` is raised. Elsewhere (data loading,
    testing), or on a second signal, `Interrupted` is raised at once."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.deferring = False
        self.installed = False
        self.last_checkpoint: Optional[str] = None  # the newest last.ckpt of this job
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = signum
        if self.deferring and first:
            log.warning("received %s: finishing the current step, then saving last.ckpt (send it again to stop "
                        "at once)", signal.Signals(signum).name)
            return
        raise Interrupted(signum, self.last_checkpoint)

    def claim_sigterm(self) -> None:
        """Take SIGTERM back from Lightning's handler (which would stop mid-validation)."""
        if self.installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handle)

    @contextlib.contextmanager
    def active(self) -> Iterator["StopSignals"]:
        """Install the handlers for the duration of one job (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self.signum, self.deferring, self.last_checkpoint, self.installed = None, False, None, True
        self._previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self.installed, self.deferring = False, False


STOP = StopSignals()


class LastCheckpoint(Checkpoint):
    """Keeps `<dirpath>/last.ckpt` a point that training resumes from exactly.

    Saved every `every_n_train_steps` optimizer steps (mid-epoch, never on an epoch's last batch, where
    validation follows), at the end of every epoch after validation, early stopping and the best
    checkpoint have updated, and on SIGINT / SIGTERM at the next of these points. Saves are atomic
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
        self._stop_if_requested(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        STOP.deferring = False

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
