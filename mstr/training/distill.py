"""Distillation: a student `FlowClassifier` trained against a frozen teacher.

Methods (`distill.method`), each a sum of named terms over teacher and student outputs:
  logits     (1 - alpha) * task + alpha * T^2 * KL(teacher/T || student/T)          (Hinton et al.)
  features   task + feature_weight * hint loss between matched stages                 (FitNets)
  attention  task + attention_weight * attention transfer over time and feature axes  (Zagoruyko & Komodakis)
  combined   the logits loss + feature_weight * hint + attention_weight * attention
The teacher is a network (`distill.teacher=network`) or a tree ensemble (`xgboost` / `lightgbm`,
see tree_teacher.py; logits only). Intermediate maps are collected with forward hooks at the points
each backbone declares (`hook_points()`: named stages and their channel counts), registered when
fitting starts and removed when it ends, so the backbone never knows it is distilled. Hint and
attention weights ramp up over the first `hint_warmup_fraction` of training: early on the student's
maps are noise, and a full-strength hint then mostly fights the task loss.

KD on augmented windows (`distill.augment=mixup|swap`): labelled rows are few where it matters (rare
attacks) and a teacher's soft targets on its own training rows are nearly one-hot, so most of what
it knows is its answer *between* those rows. Each batch is extended by `augment_fraction` as many
synthetic windows (mixup: a random convex mix of two windows; swap: each column taken from another
window with probability 0.3) which carry no label, only the teacher's soft targets.

The teacher is frozen, kept in eval mode and not part of the student's state; hint projections are,
but they only serve training and are dropped when the student is rebuilt from its checkpoint. Being
frozen, its logits on the training windows never change: when only logits are distilled they are
computed once, when fitting starts, and looked up by row (a network teacher can cost 50x the
student's forward pass, a booster is slow per small batch); augmented windows, and windows whose
earlier flows were swapped for another's when the teacher reads them, are new each step and go
through the teacher each time.
"""

from __future__ import annotations

import time
from typing import Optional

import torch
from torch import nn

from mstr.options import DISTILL_AUGMENTS, DISTILL_METHODS
from mstr.training.hooks import FeatureCollector, match_stages
from mstr.training.losses import attention_loss, hint_loss, kd_logit_loss
from mstr.training.module import FlowClassifier

SWAP_PROBABILITY = 0.3


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def method_weights(distill: dict) -> dict[str, float]:
    """(alpha for the KD term, weight of hints, weight of attention) that a method switches on."""
    method = distill["method"]
    if method not in DISTILL_METHODS:
        raise ValueError(f"distill.method={method!r}: must be one of {list(DISTILL_METHODS)}")
    uses_logits = method in ("logits", "combined")
    return {
        "alpha": float(distill.get("alpha", 0.5)) if uses_logits else 0.0,
        "features": float(distill.get("feature_weight", 1.0)) if method in ("features", "combined") else 0.0,
        "attention": float(distill.get("attention_weight", 1.0)) if method in ("attention", "combined") else 0.0,
    }


class DistillationModule(FlowClassifier):
    def __init__(self, *args, teacher: nn.Module, distill: dict, **kwargs):
        super().__init__(*args, **kwargs)
        keys = ("method", "teacher", "temperature", "alpha", "feature_weight", "attention_weight",
                "hint_warmup_fraction", "augment", "augment_fraction")
        self.save_hyperparameters({"distill": {k: distill.get(k) for k in keys}}, logger=False)
        # Held outside the module tree: not trained, not saved with the student, not in optimisers.
        self._teacher = [freeze(teacher)]
        self.temperature = float(distill.get("temperature", 4.0))
        self.weights = method_weights(distill)
        self.warmup_fraction = float(distill.get("hint_warmup_fraction", 0.0) or 0.0)
        self.augment = str(distill.get("augment", "none") or "none")
        self.augment_fraction = float(distill.get("augment_fraction", 1.0))
        if self.augment not in DISTILL_AUGMENTS:
            raise ValueError(f"distill.augment={self.augment!r}: must be one of {list(DISTILL_AUGMENTS)}")
        self.pairs: list[tuple[str, str]] = []
        self._collectors: list[FeatureCollector] = []
        self._teacher_logits: Optional[torch.Tensor] = None
        self.teacher_targets_s = 0.0  # the cached logits pass: teacher cost inside the student's fit
        if self.weights["features"] or self.weights["attention"]:
            if not hasattr(teacher, "hook_points"):
                raise ValueError(f"distill.method={distill['method']!r} matches intermediate maps, which only a "
                                 "network teacher has; use distill.method=logits with a tree teacher")
            student_points, teacher_points = self.model.hook_points(), teacher.hook_points()
            self.pairs = match_stages(list(student_points), list(teacher_points))
            if self.weights["features"]:
                # Hint projections (student channels -> teacher channels), one per matched pair.
                self.hint_projections = nn.ModuleList(
                    nn.Conv2d(student_points[s], teacher_points[t], kernel_size=1, bias=False) for s, t in self.pairs
                )
        if self.weights["alpha"] == 0.0 and self.augment != "none":
            raise ValueError("distill.augment needs the logit term (distill.method=logits or combined)")

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    # ---- hooks live exactly as long as fitting -------------------------------------------------
    def on_fit_start(self) -> None:
        self.teacher.to(self.device)
        if self.pairs:
            self._collectors = [FeatureCollector(self.model, [s for s, _ in self.pairs]),
                                FeatureCollector(self.teacher, [t for _, t in self.pairs])]
        elif self._trainer is not None and hasattr(self.trainer.datamodule, "dataset"):
            start = time.perf_counter()
            self._teacher_logits = self._logits_of(self.trainer.datamodule.dataset("train"))
            self.teacher_targets_s = time.perf_counter() - start

    def on_fit_end(self) -> None:
        for collector in self._collectors:
            collector.remove()
        self._collectors = []
        self._teacher_logits = None
        self.teacher.to("cpu")  # it served training only; give the accelerator's memory back

    @torch.no_grad()
    def _logits_of(self, windows, batch_size: int = 4096) -> torch.Tensor:
        """The teacher's logits for every window of a split, in row order, on this module's device."""
        out = []
        for start in range(0, len(windows), batch_size):
            x, _ = windows.gather(torch.arange(start, min(start + batch_size, len(windows))))
            out.append(self.teacher(x.to(self.device)))
        return torch.cat(out)

    def on_train_epoch_start(self) -> None:
        self.teacher.eval()  # Lightning puts the LightningModule in train mode; the teacher stays eval

    def _ramp(self) -> float:
        if self.warmup_fraction <= 0 or self._trainer is None:
            return 1.0
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        return min(1.0, self.global_step / (self.warmup_fraction * total))

    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        """Unlabelled windows made from this batch (see the module docstring)."""
        n = max(1, int(round(len(x) * self.augment_fraction)))
        first = torch.randint(0, len(x), (n,), device=x.device)
        other = torch.randint(0, len(x), (n,), device=x.device)
        if self.augment == "mixup":
            lam = torch.rand(n, 1, 1, device=x.device)
            return lam * x[first] + (1.0 - lam) * x[other]
        # swap: whole columns (every flat position of a column's token) from the other window
        column = self.model.column_index().to(x.device)
        picks = torch.rand(n, int(column.max()) + 1, device=x.device) < SWAP_PROBABILITY
        return torch.where(picks[:, column].unsqueeze(1), x[other], x[first])

    def _teacher_targets(self, x: torch.Tensor, inputs: torch.Tensor, index: Optional[torch.Tensor],
                         swapped: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Teacher logits for the batch's windows (from the per-row cache when there is one) followed by
        those of its augmented windows. The cache holds the teacher's answer on each row's own window, so
        windows that took another's context (`data.context_swap`) go through a teacher that reads the
        context again: a target from the original context would teach the student to ignore the swap."""
        with torch.no_grad():
            if self._teacher_logits is None or index is None or self._collectors:
                return self.teacher(inputs)
            targets = self._teacher_logits[index.to(self._teacher_logits.device)]
            if swapped is not None and getattr(self.teacher, "reads_context", True) and bool(swapped.any()):
                targets = targets.clone()
                targets[swapped] = self.teacher(x[swapped])
            return torch.cat([targets, self.teacher(inputs[len(x):])]) if len(inputs) > len(x) else targets

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, index: Optional[torch.Tensor] = None,
                      swapped: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.cat([x, self._augmented(x)]) if self.augment != "none" else x
        all_logits = self(inputs)
        logits = all_logits[: len(y)]
        teacher_logits = self._teacher_targets(x, inputs, index, swapped)
        loss = self.task_loss(logits, y)
        alpha = self.weights["alpha"]
        if alpha:
            kd = kd_logit_loss(all_logits, teacher_logits, self.temperature)
            self.log("train/kd_loss", kd, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
            loss = (1.0 - alpha) * loss + alpha * kd
        if not self._collectors:
            return loss, logits
        student_maps, teacher_maps = self._collectors
        ramp = self._ramp()
        if self.weights["features"]:
            hint = sum(hint_loss(student_maps[s], teacher_maps[t], proj)
                       for (s, t), proj in zip(self.pairs, self.hint_projections)) / len(self.pairs)
            self.log("train/hint_loss", hint, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
            loss = loss + ramp * self.weights["features"] * hint
        if self.weights["attention"]:
            att = sum(attention_loss(student_maps[s], teacher_maps[t]) for s, t in self.pairs) / len(self.pairs)
            self.log("train/attention_loss", att, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
            loss = loss + ramp * self.weights["attention"] * att
        return loss, logits
