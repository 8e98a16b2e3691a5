"""Scoring a trained model on held-out data: probabilities, then torchmetrics over every test set
together and over each on its own."""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import DataLoader

from mstr.training.metrics import compute_with_fpr, detection_metrics, scores_for

Scored = tuple[torch.Tensor, torch.Tensor]  # (probabilities [N, C], labels [N])


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader) -> Scored:
    """(probabilities [N, C], labels [N]) on the CPU, computed on the model's device in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    probs, labels = [], []
    for x, y in loader:
        probs.append(model(x.to(device)).softmax(-1).cpu())
        labels.append(y)
    model.train(was_training)
    return torch.cat(probs), torch.cat(labels)


def score(probs: torch.Tensor, labels: torch.Tensor, num_classes: int, prefix: str) -> dict[str, float]:
    metrics = detection_metrics(num_classes, prefix)
    metrics.update(scores_for(probs, num_classes), labels)
    return compute_with_fpr(metrics)


def each_and_all(sets: dict[str, Scored]) -> dict[Optional[str], Scored]:
    """Every set together (key None) and, when there are several, each on its own (by name)."""
    together = (torch.cat([p for p, _ in sets.values()]), torch.cat([y for _, y in sets.values()]))
    return {None: together, **(sets if len(sets) > 1 else {})}


def score_sets(sets: dict[str, Scored], num_classes: int, stage: str = "test") -> dict[str, float]:
    """`<stage>/...` over all sets together and, with several sets, `<stage>_<name>/...` for each."""
    results: dict[str, float] = {}
    for name, (probs, labels) in each_and_all(sets).items():
        results.update(score(probs, labels, num_classes, f"{stage}/" if name is None else f"{stage}_{name}/"))
    return results


def evaluate_tests(model: torch.nn.Module, loaders: dict[str, DataLoader], num_classes: int) -> dict[str, float]:
    """`score_sets` of the model's predictions on each test loader (by test set name)."""
    return score_sets({name: predict(model, loader) for name, loader in loaders.items()}, num_classes)
