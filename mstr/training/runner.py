"""Fitting one model from config: module, trainer, teacher reuse. Knows Lightning, not run dirs or
loggers: the job hands it the dirs to write to and the loggers to use."""

from __future__ import annotations

import contextlib
import filecmp
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn

from mstr.errors import ConfigError, DataError, one_line
from mstr.options import TREE_TEACHERS
from mstr.data.datamodule import FlowDataModule
from mstr.data.sampling import class_weights
from mstr.training.checkpoint import load_classifier
from mstr.training.distill import DistillationModule
from mstr.training.evaluation import predict, score_sets
from mstr.training.module import FlowClassifier
from mstr.training.signature import check_resumable, check_signature
from mstr.training.tree_teacher import BoosterTeacher, booster_file, fit_tree_teacher

log = logging.getLogger(__name__)


def _plain(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def build_module(model_cfg: DictConfig, loss_cfg: DictConfig, dm: FlowDataModule,
                 teacher: Optional[nn.Module] = None, distill_cfg: Optional[DictConfig] = None) -> FlowClassifier:
    """The LightningModule for `model_cfg`; with a teacher (a network's backbone or a booster), the
    distillation module learning from it."""
    weights = class_weights(dm.train_labels(), dm.num_classes, loss_cfg.get("class_weights", "none"))
    # The data's window and column layout travel with the backbone settings, so a checkpoint rebuilds
    # exactly the model that was trained (temporal branches only with a window, one token per column).
    backbone = {**_plain(model_cfg.backbone), "window": dm.window, "layout": dm.preprocessor.layout()}
    kwargs = dict(
        num_features=dm.num_features, num_classes=dm.num_classes, backbone=backbone,
        optim=_plain(model_cfg.optim), loss=_plain(loss_cfg), role=model_cfg.role, class_names=dm.class_names,
        class_weights=None if weights is None else weights.tolist(), data_signature=dm.signature(),
        preprocessor=dm.preprocessor.to_dict(), input_columns=dm.input_columns(),
    )
    if teacher is None:
        return FlowClassifier(**kwargs)
    return DistillationModule(teacher=teacher, distill=_plain(distill_cfg), **kwargs)


def build_trainer(trainer_cfg: DictConfig, callbacks_cfg: DictConfig, loggers: list, checkpoint_dir: Path,
                  **overrides) -> pl.Trainer:
    callbacks = []
    for name, cb_cfg in (callbacks_cfg or {}).items():
        if cb_cfg is None or "_target_" not in cb_cfg:
            continue
        if "dirpath" in cb_cfg:
            cb_cfg = OmegaConf.merge(cb_cfg, {"dirpath": str(checkpoint_dir)})
        if not loggers and str(cb_cfg["_target_"]).endswith("LearningRateMonitor"):
            continue  # it needs a logger to write to (logger=none)
        if str(cb_cfg["_target_"]).endswith("ProgressBar") and not overrides.get(
                "enable_progress_bar", trainer_cfg.get("enable_progress_bar", True)):
            continue  # Lightning refuses a progress bar callback with the bar switched off
        callbacks.append(_built(f"callbacks.{name}", cb_cfg))
    return _built("trainer", trainer_cfg, callbacks=callbacks, logger=loggers or False, **overrides)


def _built(key: str, cfg: DictConfig, **kwargs):
    """`instantiate`, with a value Lightning (or a callback) refuses named in one line under its config key
    instead of Hydra's wrapped traceback."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as err:
        refused = (ValueError, TypeError, ImportError, MisconfigurationException)
        if not isinstance(err.__cause__, refused):
            raise
        raise ConfigError(f"{key}: {one_line(err.__cause__)}") from None


def best_checkpoint(trainer: pl.Trainer) -> Optional[str]:
    cb = trainer.checkpoint_callback
    if isinstance(cb, ModelCheckpoint) and cb.best_model_path and Path(cb.best_model_path).is_file():
        return cb.best_model_path
    return None


def best_in(checkpoint_dir: Path) -> Optional[Path]:
    path = Path(checkpoint_dir) / "best.ckpt"
    return path if path.is_file() else None


def fit(module: FlowClassifier, dm: FlowDataModule, trainer: pl.Trainer, ckpt_path: Optional[str] = None) -> float:
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    return time.perf_counter() - start


def final_model(trainer: pl.Trainer, module: FlowClassifier) -> FlowClassifier:
    """The best checkpoint by validation (model selection never sees test), else the module as trained."""
    path = best_checkpoint(trainer)
    return load_classifier(path) if path else module.eval()


def test_metrics(model: FlowClassifier, dm: FlowDataModule, device="cpu") -> tuple[dict[str, float], float, dict]:
    """(test metrics, seconds, {test set: (probabilities, labels)}), scored on `device` (the one
    training used)."""
    start = time.perf_counter()
    scored = {name: predict(model.to(device), loader) for name, loader in dm.test_loaders().items()}
    results = score_sets(scored, dm.num_classes, subsets=dm.test_subsets(),
                         benign_classes=dm.preprocessor.benign_classes)
    return results, time.perf_counter() - start, scored


def unseen_type_metrics(model: FlowClassifier, dm: FlowDataModule, device="cpu") -> dict[str, float]:
    """With `data.val_unseen_types`: the share of validation's held-out attack types that the model flags
    (as any attack class), `val/unseen_type_recall`. Validation only, so it may choose settings."""
    if dm.val_unseen is None:
        return {}
    probs, _ = predict(model.to(device), dm.val_dataloader())
    flagged = probs.argmax(-1).numpy() != 0
    return {"val/unseen_type_recall": float(flagged[dm.val_unseen].mean()),
            "val/unseen_type_rows": int(dm.val_unseen.sum())}


# Settings outside the teacher's model config that shape how a network teacher trains, with the value
# each had when the key left it out: one enters the key only when set otherwise, so that teachers cached
# before it did stay valid.
_TEACHER_TRAINING = {
    "trainer.limit_train_batches": 1.0, "trainer.limit_val_batches": 1.0, "trainer.min_epochs": 1,
    "trainer.devices": 1, "trainer.strategy": "auto", "trainer.accumulate_grad_batches": 1,
    "trainer.gradient_clip_val": None, "trainer.check_val_every_n_epoch": 1, "trainer.val_check_interval": None,
    "callbacks.early_stopping.monitor": "val/f1", "callbacks.early_stopping.mode": "max",
    "callbacks.early_stopping.patience": 4, "callbacks.early_stopping.min_delta": 0.0,
    "callbacks.model_checkpoint.monitor": "val/f1", "callbacks.model_checkpoint.mode": "max",
}


def teacher_key(cfg: DictConfig, dev_rows: str) -> str:
    """Hash of everything that shapes a teacher: data config and the rows it gives (so an edited data
    file or a changed split never reuses a teacher that saw other rows), the teacher's kind and seed; for
    a network teacher also its model config, loss, epochs, device and the training settings that stop or
    select it (early stopping, checkpoint monitor, batch limits). A booster is fit on the rows alone, so
    the student's epochs or loss never refit it."""
    data = _plain(cfg.data)
    for volatile in ("num_workers", "eval_batch_size", "on_device"):
        data.pop(volatile, None)
    if data.get("column_order") == "data":  # the order before the key existed: cached teachers stay valid
        data.pop("column_order")
    if not data.get("val_unseen_types"):  # likewise off
        data.pop("val_unseen_types", None)
    kind = cfg.distill.get("teacher", "network")
    if kind != "network":
        identity = {"data": data, "dev_rows": dev_rows, "teacher": kind, "seed": cfg.seed}
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    identity = {"data": data, "dev_rows": dev_rows, "teacher": _plain(cfg.distill.teacher_model),
                "loss": _plain(cfg.loss), "epochs": cfg.distill.teacher_max_epochs, "seed": cfg.seed,
                "accelerator": cfg.trainer.get("accelerator"), "precision": str(cfg.trainer.get("precision", "32"))}
    training = {}
    for switchable in ("callbacks.early_stopping", "callbacks.model_checkpoint"):
        if OmegaConf.select(cfg, switchable) is None:  # `callbacks.early_stopping=null`: trained to the last epoch
            training[switchable] = "off"
    for path, unset in _TEACHER_TRAINING.items():
        value = OmegaConf.select(cfg, path, default=unset)
        if value is not None and value != unset:
            training[path] = value if isinstance(value, (int, float, str, bool)) else str(value)
    # batch limits keep the name they entered the key with
    limits = {k.split(".")[1]: training.pop(k) for k in ("trainer.limit_train_batches", "trainer.limit_val_batches")
              if k in training}
    if limits:
        identity["limits"] = limits
    if training:
        identity["training"] = training
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def obtain_tree_teacher(cfg: DictConfig, dm: FlowDataModule, kind: str,
                        cache_dir: Path) -> tuple[BoosterTeacher, str, bool]:
    """A booster fit on this data's training rows, or the cached one fit on exactly these rows."""
    cached = Path(cache_dir) / teacher_key(cfg, dm.dev_rows) / booster_file(kind)
    if cached.is_file():
        teacher = BoosterTeacher.load(cached)
        check_signature(cached, teacher.signature, dm.signature(), same_rows=True)
        log.info("teacher: reusing %s %s (same data)", kind, cached)
        return teacher, str(cached), False
    log.info("teacher: fitting %s on the training rows (early stopping on validation)", kind)
    teacher = fit_tree_teacher(kind, dm, int(cfg.seed))
    tmp = cached.with_name(f"tmp{os.getpid()}_{cached.name}")
    with _removed_on_failure(tmp, tmp.with_suffix(".meta.json")):
        teacher.save(tmp)
        os.replace(tmp.with_suffix(".meta.json"), cached.with_suffix(".meta.json"))
        os.replace(tmp, cached)  # the booster last: a reader that finds it finds its meta too
    return teacher, str(cached), True


@contextlib.contextmanager
def _removed_on_failure(*paths: Path) -> Iterator[None]:
    """The temporary files of a write into the teacher cache, removed when the write fails (a full disk):
    the cache is shared by every later run, and nothing would ever clean it."""
    try:
        yield
    except BaseException:
        for path in paths:
            path.unlink(missing_ok=True)
        raise


def obtain_teacher(cfg: DictConfig, dm: FlowDataModule, teacher_dir: Path, cache_dir: Path,
                   loggers: Callable[[Optional[int]], list], resume: bool = False) -> tuple[nn.Module, str, bool]:
    """(teacher in eval mode, where it came from, whether it was trained in this run).

    A network teacher comes back as its backbone, a tree teacher (`distill.teacher=xgboost|lightgbm`)
    as a `BoosterTeacher`; both map windows to logits and report their size with `cost(window)`.

    Order: `distill.teacher_ckpt` if given; else a teacher cached under `cache_dir` for the same data +
    teacher config; else train one now (under `teacher_dir`, continuing its last.ckpt when `resume`,
    logging to `loggers(step resumed at, or None)`) and cache its best checkpoint for later runs.
    """
    kind = cfg.distill.get("teacher", "network")
    if kind in TREE_TEACHERS:
        return obtain_tree_teacher(cfg, dm, kind, cache_dir)
    if cfg.distill.teacher_ckpt:
        path = str(cfg.distill.teacher_ckpt)
        teacher = load_classifier(path)
        check_signature(path, teacher.hparams.data_signature, dm.signature(), same_rows=True)
        order = dm.preprocessor.layout()["names"]
        if cfg.distill.method != "logits" and teacher.model.layout.names != order:
            raise DataError(f"{path}: its columns stand in another order on the feature axis than this config's "
                            f"(data.column_order={cfg.data.get('column_order', 'data')}), and distill="
                            f"{cfg.distill.method} compares the teacher's maps with the student's column by column; "
                            "give a teacher trained with this column order, or use distill=logits")
        log.info("teacher: loaded %s", path)
        if teacher.hparams.data_signature.get("val_rows") not in (None, dm.val_rows):
            log.warning("distill.teacher_ckpt=%s was validated on another carve of these rows (another seed, "
                        "data.val_fraction or data.val_unseen_types): it trained on some of this run's validation "
                        "rows, so the student's val/... metrics, and the checkpoint and early stop chosen on them, "
                        "lean on rows its teacher learnt; give a teacher trained with this seed and data config "
                        "for a validation the student's teacher never saw", path)
        if teacher.hparams.get("role") == "student":  # self-distillation is a choice; the wrong file more often
            log.warning("distill.teacher_ckpt=%s holds a student (%s parameters), not a teacher: the student "
                        "learns from a model of its own size; give a teacher's checkpoint (<run>/teacher/"
                        "checkpoints/best.ckpt) unless that is meant", path,
                        f"{sum(p.numel() for p in teacher.parameters()):,}")
        return teacher.model, path, False
    cached = Path(cache_dir) / teacher_key(cfg, dm.dev_rows) / "teacher.ckpt"
    if cached.is_file():
        teacher = load_classifier(cached)
        check_signature(cached, teacher.hparams.data_signature, dm.signature(), same_rows=True)
        own = best_in(teacher_dir / "checkpoints") if resume else None
        if own is not None and filecmp.cmp(own, cached, shallow=False):
            # this run trained (and cached) it before it was interrupted: name it as an uninterrupted run does
            log.info("teacher: trained before the interruption, %s", own)
            return teacher.model, str(own), True
        log.info("teacher: reusing %s (same data + teacher config)", cached)
        return teacher.model, str(cached), False
    module = build_module(cfg.distill.teacher_model, cfg.loss, dm)
    last = teacher_dir / "checkpoints" / "last.ckpt"
    resuming = resume and last.is_file()
    step = None
    if resuming:
        step = int(check_resumable(last, module).get("global_step", 0))
        log.info("teacher: resuming the one this run was training, %s", last)
    else:
        log.info("teacher: none given (distill.teacher_ckpt=null) and none cached: training one first")
    # An Optuna trial's pruning callback watches the student it sweeps: the teacher's epochs would be
    # reported to the trial (and pruned on) as the student's.
    callbacks = {name: c for name, c in (cfg.callbacks or {}).items() if name != "optuna_pruning"}
    trainer = build_trainer(cfg.trainer, callbacks, loggers(step),
                            teacher_dir / "checkpoints", max_epochs=cfg.distill.teacher_max_epochs,
                            default_root_dir=str(teacher_dir))
    fit(module, dm, trainer, str(last) if resuming else None)
    path = best_checkpoint(trainer)
    if path is None:  # fast_dev_run and friends save nothing: use the model as trained, cache nothing
        return module.model.eval(), "trained in this run (not saved)", True
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    with _removed_on_failure(tmp):
        shutil.copyfile(path, tmp)
        os.replace(tmp, cached)  # atomic: a parallel run never sees half a teacher
    return load_classifier(cached).model, path, True
