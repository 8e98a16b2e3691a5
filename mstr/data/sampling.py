"""Imbalance handling: per-sample weights for a WeightedRandomSampler, and loss class weights."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from mstr.errors import ConfigError

SAMPLERS = ("none", "weighted", "sqrt")
CLASS_WEIGHTS = ("none", "balanced", "sqrt")


def _inverse_frequency(labels: np.ndarray, num_classes: int, power: float) -> np.ndarray:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    return weights


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> torch.Tensor | None:
    """Loss weights per class, normalised to mean 1 over present classes; None for mode 'none'."""
    if mode not in CLASS_WEIGHTS:
        raise ConfigError(f"loss.class_weights={mode!r}: must be one of {list(CLASS_WEIGHTS)}")
    if mode == "none":
        return None
    w = _inverse_frequency(labels, num_classes, 1.0 if mode == "balanced" else 0.5)
    w = w / w[w > 0].mean()
    return torch.as_tensor(w, dtype=torch.float32)


def make_sampler(labels: np.ndarray, num_classes: int, mode: str, seed: int) -> WeightedRandomSampler | None:
    """'weighted': every class drawn equally often; 'sqrt': in proportion to sqrt(class count)."""
    if mode not in SAMPLERS:
        raise ConfigError(f"data.sampler={mode!r}: must be one of {list(SAMPLERS)}")
    if mode == "none":
        return None
    per_class = _inverse_frequency(labels, num_classes, 1.0 if mode == "weighted" else 0.5)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.as_tensor(per_class[labels]), num_samples=len(labels),
                                 replacement=True, generator=generator)
