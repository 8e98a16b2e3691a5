"""Imbalance handling: a seeded, resumable weighted sampler (`EpochSampler`), and loss class weights."""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Sampler

from mstr.errors import ConfigError
from mstr.options import CLASS_WEIGHTS, SAMPLERS


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


def make_sampler(labels: np.ndarray, num_classes: int, mode: str, seed: int) -> "EpochSampler | None":
    """'weighted': every class drawn equally often; 'sqrt': in proportion to sqrt(class count)."""
    if mode not in SAMPLERS:
        raise ConfigError(f"data.sampler={mode!r}: must be one of {list(SAMPLERS)}")
    if mode == "none":
        return None
    per_class = _inverse_frequency(labels, num_classes, 1.0 if mode == "weighted" else 0.5)
    return EpochSampler(len(labels), torch.as_tensor(per_class[labels]), seed=seed)


class EpochSampler(Sampler[int]):
    """The training order of one epoch, a function of (seed, epoch) alone.

    With `weights`: `len` draws with replacement in proportion to the weights (a seeded
    WeightedRandomSampler); without: a seeded permutation (shuffling). Each epoch draws from its own
    generator, so a run resumed at epoch e, batch b sees exactly the samples an uninterrupted run
    would have seen (`start_at`), and the global RNG is never touched. Lightning calls `set_epoch`
    before every epoch; used on its own, the sampler moves to the next epoch after each pass.
    """

    def __init__(self, num_samples: int, weights: Optional[torch.Tensor] = None, seed: int = 0):
        self.num_samples = int(num_samples)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.seed = int(seed)
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def start_at(self, epoch: int, skip: int) -> None:
        """The next pass is `epoch`'s order without its first `skip` samples (exact resumption)."""
        self.epoch, self._skip = int(epoch), int(skip)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        state = np.random.SeedSequence([self.seed & 0xFFFFFFFFFFFFFFFF, int(epoch)]).generate_state(1, np.uint64)
        generator = torch.Generator().manual_seed(int(state[0]) & 0x7FFFFFFFFFFFFFFF)
        if self.weights is None:
            return torch.randperm(self.num_samples, generator=generator)
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_order(self.epoch)[self._skip:].tolist()  # drawn now, not lazily per item
        self.epoch, self._skip = self.epoch + 1, 0
        return iter(order)
