"""Scoring a trained model on held-out loaders: probabilities, then torchmetrics per set and overall."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from mstr.training.metrics import compute_with_fpr, detection_metrics, scores_for


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities [N, C], labels [N]) on the model's device, in eval mode."""
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
    """Metrics of predictions this process holds in full (every test row): never synced with other
    processes, so scoring on rank zero after DDP training neither waits for the other ranks nor sends
    CPU tensors over a GPU-only backend."""
    metrics = detection_metrics(num_classes, prefix, sync_on_compute=False)
    metrics.update(scores_for(probs, num_classes), labels)
    return compute_with_fpr(metrics)


def evaluate_tests(model: torch.nn.Module, loaders: dict[str, DataLoader], num_classes: int) -> dict[str, float]:
    """`test/...` over all test sets together and, with several sets, `test_<name>/...` for each."""
    results: dict[str, float] = {}
    all_probs, all_labels = [], []
    for name, loader in loaders.items():
        probs, labels = predict(model, loader)
        all_probs.append(probs)
        all_labels.append(labels)
        if len(loaders) > 1:
            results.update(score(probs, labels, num_classes, f"test_{name}/"))
    results.update(score(torch.cat(all_probs), torch.cat(all_labels), num_classes, "test/"))
    return results
