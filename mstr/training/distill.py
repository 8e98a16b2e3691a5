"""Distillation: a student `FlowClassifier` trained against a frozen teacher.

Methods (`distill.method`), each a sum of terms over teacher and student outputs:
  logits     (1 - alpha) * task + alpha * T^2 * KL(teacher/T || student/T)          (Hinton et al.)
  features   task + feature_weight * hint loss between matched stages                 (FitNets)
  attention  task + attention_weight * attention transfer over time and feature axes  (Zagoruyko & Komodakis)
  combined   the logits loss + feature_weight * hint + attention_weight * attention
Intermediate maps are collected with forward hooks on both backbones' stages, so the backbone code
never knows it is distilled. Hint and attention weights ramp up linearly over the first
`hint_warmup_fraction` of training: early on the student's maps are noise, and a full-strength hint
then mostly fights the task loss.

The teacher is frozen, kept in eval mode (dropout off, batch-norm statistics fixed) and is not part of
the student's state; the hint projections are, but they are dropped when the student is exported or
rebuilt from its checkpoint (they only serve training).
"""

from __future__ import annotations

import torch
from torch import nn

from mstr.training.hooks import FeatureCollector, match_stages, stage_names
from mstr.training.losses import attention_loss, hint_loss, kd_logit_loss
from mstr.training.module import FlowClassifier

METHODS = ("logits", "features", "attention", "combined")


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def method_weights(distill: dict) -> dict[str, float]:
    """(alpha for the KD term, weight of hints, weight of attention) that a method switches on."""
    method = distill["method"]
    if method not in METHODS:
        raise ValueError(f"distill.method={method!r}: must be one of {list(METHODS)}")
    uses_logits = method in ("logits", "combined")
    return {
        "alpha": float(distill.get("alpha", 0.5)) if uses_logits else 0.0,
        "features": float(distill.get("feature_weight", 1.0)) if method in ("features", "combined") else 0.0,
        "attention": float(distill.get("attention_weight", 1.0)) if method in ("attention", "combined") else 0.0,
    }


class DistillationModule(FlowClassifier):
    def __init__(self, *args, teacher: nn.Module, distill: dict, **kwargs):
        super().__init__(*args, **kwargs)
        keys = ("method", "temperature", "alpha", "feature_weight", "attention_weight", "hint_warmup_fraction")
        self.save_hyperparameters({"distill": {k: distill.get(k) for k in keys}}, logger=False)
        # Held outside the module tree: not trained, not saved with the student, not in optimisers.
        self._teacher = [freeze(teacher)]
        self.temperature = float(distill.get("temperature", 4.0))
        self.weights = method_weights(distill)
        self.warmup_fraction = float(distill.get("hint_warmup_fraction", 0.0) or 0.0)
        self.pairs: list[tuple[str, str]] = []
        if self.weights["features"] or self.weights["attention"]:
            self.pairs = match_stages(stage_names(self.model), stage_names(teacher))
            self._student_maps = FeatureCollector(self.model, [s for s, _ in self.pairs])
            self._teacher_maps = FeatureCollector(teacher, [t for _, t in self.pairs])
        if self.weights["features"]:
            widths = {n: m[-1].fuse[0].out_channels for n, m in self._stage_modules(self.model).items()}
            t_widths = {n: m[-1].fuse[0].out_channels for n, m in self._stage_modules(teacher).items()}
            # Hint projections (student channels -> teacher channels), one per matched pair.
            self.hint_projections = nn.ModuleList(
                nn.Conv2d(widths[s], t_widths[t], kernel_size=1, bias=False) for s, t in self.pairs
            )

    @staticmethod
    def _stage_modules(model: nn.Module) -> dict[str, nn.Module]:
        return {name: model.get_submodule(name) for name in stage_names(model)}

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def on_fit_start(self) -> None:
        self.teacher.to(self.device)

    def on_train_epoch_start(self) -> None:
        self.teacher.eval()  # Lightning puts the LightningModule in train mode; the teacher stays eval

    def _ramp(self) -> float:
        if self.warmup_fraction <= 0 or self._trainer is None:
            return 1.0
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        return min(1.0, self.global_step / (self.warmup_fraction * total))

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(x)
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        loss = self.task_loss(logits, y)
        alpha = self.weights["alpha"]
        if alpha:
            kd = kd_logit_loss(logits, teacher_logits, self.temperature)
            self.log("train/kd_loss", kd, on_step=False, on_epoch=True, batch_size=len(y))
            loss = (1.0 - alpha) * loss + alpha * kd
        ramp = self._ramp()
        if self.weights["features"]:
            hint = sum(hint_loss(self._student_maps[s], self._teacher_maps[t], proj)
                       for (s, t), proj in zip(self.pairs, self.hint_projections)) / len(self.pairs)
            self.log("train/hint_loss", hint, on_step=False, on_epoch=True, batch_size=len(y))
            loss = loss + ramp * self.weights["features"] * hint
        if self.weights["attention"]:
            att = sum(attention_loss(self._student_maps[s], self._teacher_maps[t]) for s, t in self.pairs) / len(self.pairs)
            self.log("train/attention_loss", att, on_step=False, on_epoch=True, batch_size=len(y))
            loss = loss + ramp * self.weights["attention"] * att
        return loss, logits
