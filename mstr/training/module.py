"""`FlowClassifier`: supervised training of any backbone the builder makes (teacher or student).

Everything a checkpoint needs to score new flows on its own travels in its hyperparameters as plain
data: backbone config, class names, data signature and the fitted preprocessing.
"""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch

from mstr.errors import ConfigError
from mstr.models import build_backbone
from mstr.options import BEST_VAL_METRICS
from mstr.training.losses import build_task_loss
from mstr.training.metrics import compute_with_fpr, detection_metrics, scores_for

CHECKPOINT_FORMAT = 1
MIN_SCHEDULED_STEPS = 4  # fewer optimiser steps than this train at a constant learning rate


class FlowClassifier(pl.LightningModule):
    def __init__(self, num_features: int, num_classes: int, backbone: dict, optim: dict, loss: dict,
                 role: str = "model", class_names: Optional[list] = None, class_weights: Optional[list] = None,
                 data_signature: Optional[dict] = None, preprocessor: Optional[dict] = None,
                 input_columns: Optional[dict] = None):
        super().__init__()
        self.save_hyperparameters(ignore=["teacher"], logger=False)  # entry points log the composed config
        self.model = build_backbone(num_features, num_classes, **backbone)
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.task_loss = build_task_loss(loss.get("name", "ce"), weight, gamma=loss.get("gamma", 2.0),
                                         label_smoothing=loss.get("label_smoothing", 0.0))
        self.num_classes = num_classes
        # No AUROC while training: it keeps every score of the epoch to sort them, for a number
        # nobody selects on (validation has it).
        self.train_metrics = detection_metrics(num_classes, "train/", auroc=False)
        self.val_metrics = detection_metrics(num_classes, "val/")
        self.val_best: dict[str, float] = {}  # best validation value per metric, restored on resume

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def cost(self, window: int) -> dict[str, int]:
        return self.model.cost(window)

    # ---- steps -------------------------------------------------------------------------------
    def training_loss(self, x: torch.Tensor, y: torch.Tensor, index: Optional[torch.Tensor] = None,
                      swapped: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) for a batch (`index`: the training rows it holds; `swapped`: which of its
        windows took another window's context); the distillation module adds its terms here."""
        logits = self(x)
        loss = self.task_loss(logits, y)
        return loss, logits

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, *rows = batch  # + (index, swapped) from the training loader
        loss, logits = self.training_loss(x, y, *rows)
        self.train_metrics.update(scores_for(logits.detach().softmax(-1), self.num_classes), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        return loss

    # Epoch metrics come from torchmetrics, whose compute() has already gathered every rank's counts: the
    # values are equal on all ranks, so sync_dist's mean of them is the value itself. Lightning cannot tell
    # and warns on every epoch of a DDP run without it.
    def on_train_epoch_end(self) -> None:
        self.log_dict(compute_with_fpr(self.train_metrics), prog_bar=False, sync_dist=True)
        self.train_metrics.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", self.task_loss(logits, y), on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.val_metrics.update(scores_for(logits.softmax(-1), self.num_classes), y)

    def on_validation_epoch_end(self) -> None:
        values = compute_with_fpr(self.val_metrics)
        self.val_metrics.reset()
        if not self.trainer.sanity_checking:
            for name in BEST_VAL_METRICS:
                self.val_best[name] = max(self.val_best.get(name, float("-inf")), values[f"val/{name}"])
                values[f"val/{name}_best"] = self.val_best[name]
        self.log("val/f1", values.pop("val/f1"), prog_bar=True, sync_dist=True)
        self.log_dict(values, prog_bar=False, sync_dist=True)

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        optim = self.hparams.optim
        params = [p for p in self.parameters() if p.requires_grad]  # backbone (+ hint projections)
        opt = torch.optim.AdamW(params, lr=optim["lr"], weight_decay=optim["weight_decay"])
        if optim.get("scheduler", "onecycle") == "none":
            return opt
        total = int(self.trainer.estimated_stepping_batches)
        if total < MIN_SCHEDULED_STEPS:  # a handful of steps (debug runs) has no schedule to follow
            return opt
        resumed = getattr(self, "_resumed_schedule_steps", None)
        if resumed is not None and resumed != total:  # torch would fail with a traceback at the old schedule's end
            raise ConfigError(f"cannot resume: the checkpoint's learning-rate schedule (onecycle) runs over {resumed} "
                              f"steps, this config's over {total} (trainer.max_epochs, trainer.limit_train_batches or "
                              "the data differ); resume with the command that started the run, or train longer as a "
                              "new run")
        # OneCycleLR divides by each phase's length: a warm-up of one step (10 steps at 10%) is 0 / 0
        warmup = max(optim.get("warmup_fraction", 0.1), 2 / total)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=optim["lr"], total_steps=total, pct_start=warmup)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain dicts only, so the file loads with torch.load(weights_only=True).
        checkpoint["hyper_parameters"] = _plain(dict(checkpoint.get("hyper_parameters", {})))
        checkpoint["mstr_format"] = CHECKPOINT_FORMAT
        checkpoint["val_best"] = dict(self.val_best)
        if self._trainer is not None:  # what a resumed run's schedule is checked against before any work
            checkpoint["max_epochs"] = self.trainer.max_epochs

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_best = dict(checkpoint.get("val_best", {}))
        schedules = checkpoint.get("lr_schedulers") or []
        self._resumed_schedule_steps = schedules[0].get("total_steps") if schedules else None


def _plain(value: Any) -> Any:
    """Containers (AttributeDict, DictConfig leftovers) -> builtin dict / list, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
