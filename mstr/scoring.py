"""Decision thresholds for `mstr.evaluate`: tuned on validation only; `at_threshold` then moves the
decision point of the attack probability to 0.5 so the torchmetrics collection (which decides at 0.5)
applies it."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def tune_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of the rule `score > threshold` on these (validation) flows.

    Candidates lie midway between consecutive distinct scores, so the cut does not sit on a
    validation flow's exact score; ties keep the higher threshold (fewer alarms).
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("threshold tuning needs both classes in the validation split")
    distinct = np.unique(scores)[::-1]  # high to low
    cuts = np.r_[(distinct[:-1] + distinct[1:]) / 2.0, distinct[-1] / 2.0]
    n_flagged = len(scores) - np.searchsorted(np.sort(scores), cuts, side="right")
    tp = labels.sum() - np.searchsorted(np.sort(scores[labels]), cuts, side="right")
    f1 = 2.0 * tp / (n_flagged + labels.sum())
    best = int(np.argmax(f1))
    return float(cuts[best]), float(f1[best])


def at_threshold(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """Binary probabilities [N, 2] with P(attack) mapped monotonically so that `threshold` lands on
    0.5: decisions at 0.5 then equal decisions at `threshold`, and AUROC is unchanged."""
    t = min(max(float(threshold), 1e-9), 1.0 - 1e-9)
    p = probs[:, 1].double()
    moved = torch.where(p <= t, 0.5 * p / t, 0.5 + 0.5 * (p - t) / (1.0 - t))
    return torch.stack([1.0 - moved, moved], dim=1)
