"""Distillation: a student `FlowClassifier` trained against a frozen teacher's outputs.

The teacher is any checkpoint the builder can rebuild; it is frozen, kept in eval mode (dropout off,
batch-norm statistics fixed) and is not part of the student's state, so the student's checkpoint
stays small. Loss = alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * task loss.
"""

from __future__ import annotations

import torch
from torch import nn

from mstr.training.losses import kd_logit_loss
from mstr.training.module import FlowClassifier


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class DistillationModule(FlowClassifier):
    def __init__(self, *args, teacher: nn.Module, distill: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.save_hyperparameters({"distill": {k: distill[k] for k in ("method", "temperature", "alpha")}})
        # Held outside the module tree: not trained, not saved with the student, not in optimisers.
        self._teacher = [freeze(teacher)]
        self.temperature = float(distill["temperature"])
        self.alpha = float(distill["alpha"])

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def on_fit_start(self) -> None:
        self.teacher.to(self.device)

    def on_train_epoch_start(self) -> None:
        self.teacher.eval()  # Lightning puts the LightningModule in train mode; the teacher stays eval

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(x)
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        task = self.task_loss(logits, y)
        kd = kd_logit_loss(logits, teacher_logits, self.temperature)
        self.log("train/kd_loss", kd, on_step=False, on_epoch=True, batch_size=len(y))
        return self.alpha * kd + (1.0 - self.alpha) * task, logits
