"""Task losses (cross-entropy, focal) and the logit distillation loss."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from mstr.errors import ConfigError

LOSSES = ("ce", "focal")


class FocalLoss(nn.Module):
    """Lin et al. 2017: cross-entropy scaled by (1 - p_true)^gamma, so easy (majority) flows count less."""

    def __init__(self, gamma: float = 2.0, weight: Optional[torch.Tensor] = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1)
        loss = -((1.0 - log_p.exp()) ** self.gamma) * log_p
        if self.weight is not None:
            w = self.weight[target]
            return (w * loss).sum() / w.sum()
        return loss.mean()


def build_task_loss(name: str, weight: Optional[torch.Tensor] = None, gamma: float = 2.0,
                    label_smoothing: float = 0.0) -> nn.Module:
    if name == "ce":
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    if name == "focal":
        if gamma < 0:
            raise ConfigError(f"loss.gamma={gamma}: must be >= 0")
        return FocalLoss(gamma=gamma, weight=weight)
    raise ConfigError(f"loss.name={name!r}: must be one of {list(LOSSES)}")


def kd_logit_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. 2015: T^2 * KL(softmax(teacher/T) || softmax(student/T)), batch mean.

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label ones when T
    changes, so `distill.alpha` means the same thing at any temperature.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def _common_size(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool two maps [B, C, time, features] to the smaller one's time x features, so they can be compared."""
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    return F.adaptive_avg_pool2d(a, size), F.adaptive_avg_pool2d(b, size)


def hint_loss(student_map: torch.Tensor, teacher_map: torch.Tensor, projection: nn.Module) -> torch.Tensor:
    """FitNets (Romero et al. 2015): MSE between the teacher's map and the student's map lifted to the
    teacher's channels by a learned 1x1 projection, compared at a common time x space size."""
    lifted, target = _common_size(projection(student_map), teacher_map)
    return F.mse_loss(lifted, target)


def _attention(feature: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Squared activations summed over channels (and `dims`), L2-normalised per sample."""
    energy = feature.pow(2).mean(dim=1)  # [B, time, space]
    if dims:
        energy = energy.mean(dim=dims)
    return F.normalize(energy.flatten(1), dim=1)


def attention_loss(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """Attention transfer (Zagoruyko & Komodakis 2017) along both axes of a window: where in time
    (which flows) and where in feature space the teacher's activations concentrate."""
    s, t = _common_size(student_map, teacher_map)
    over_features = (_attention(s, (1,)) - _attention(t, (1,))).pow(2).sum(dim=1).mean()
    if s.shape[2] == 1:  # one flow per window: there is no "where in time" to transfer
        return over_features
    over_time = (_attention(s, (2,)) - _attention(t, (2,))).pow(2).sum(dim=1).mean()
    return over_time + over_features
