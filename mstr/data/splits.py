"""Split helpers shared by loaders and the DataModule (plain numpy; no Lightning)."""

from __future__ import annotations

import numpy as np


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a seeded per-class random `fraction` of rows; a class with one row stays out."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        k = int(round(len(rows) * fraction)) if len(rows) > 1 else 0
        mask[rng.permutation(rows)[:k]] = True
    return mask
