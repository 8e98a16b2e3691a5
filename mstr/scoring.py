"""Scoring helpers shared by `mstr.evaluate` and `mstr.baselines`.

A checkpoint must see data transformed exactly as in its training: with its own fitted
preprocessing (`hparams["preprocessor"]`), never with one fitted anew on the evaluated data, which
would use that data's statistics and feed the model differently scaled inputs.

Decision thresholds are tuned on validation only; `at_threshold` then moves the decision point of
the attack probability to 0.5 so the torchmetrics collection (which decides at 0.5) applies it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from mstr.data.preprocessing import FlowPreprocessor
from mstr.data.table import FlowTable
from mstr.data.windows import FlowWindowDataset, collate_prebatched
from mstr.training.evaluation import predict, score, subset_metrics

Scored = tuple[torch.Tensor, torch.Tensor]  # (probabilities [N, C], labels [N])


def predict_table(model: torch.nn.Module, table: FlowTable, preprocessor: FlowPreprocessor,
                  window: int, batch_size: int = 1024) -> Scored:
    loader = DataLoader(FlowWindowDataset.from_table(table, preprocessor, window), batch_size=batch_size,
                        shuffle=False, collate_fn=collate_prebatched)
    return predict(model, loader)


def score_sets(sets: dict[str, Scored], num_classes: int, stage: str = "test",
               subsets: Optional[dict[str, dict[str, np.ndarray]]] = None) -> dict[str, float]:
    """`<stage>/...` over all sets together and, with several sets, `<stage>_<name>/...` for each
    (the names training writes); with row `subsets`, also the metrics on those rows."""
    results: dict[str, float] = {}
    if len(sets) > 1:
        for name, (probs, labels) in sets.items():
            results.update(score(probs, labels, num_classes, f"{stage}_{name}/"))
    probs = torch.cat([p for p, _ in sets.values()])
    labels = torch.cat([y for _, y in sets.values()])
    results.update(score(probs, labels, num_classes, f"{stage}/"))
    return {**results, **subset_metrics(sets, subsets or {})}


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
