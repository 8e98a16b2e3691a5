"""Scoring a trained model on held-out loaders: probabilities, then torchmetrics per set and overall."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from mstr.training.metrics import compute_with_fpr, detection_metrics, scores_for


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities [N, C], labels [N]) on the model's device, in eval mode."""
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)  # a tree teacher has none and scores on the CPU
    device = param.device if param is not None else torch.device("cpu")
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


def evaluate_tests(model: torch.nn.Module, loaders: dict[str, DataLoader], num_classes: int,
                   novel: Optional[dict[str, np.ndarray]] = None) -> dict[str, float]:
    """`test/...` over all test sets together and, with several sets, `test_<name>/...` for each;
    with `novel` masks (attacks of types absent from training), also their detection rate."""
    results: dict[str, float] = {}
    all_probs, all_labels = [], []
    for name, loader in loaders.items():
        probs, labels = predict(model, loader)
        all_probs.append(probs)
        all_labels.append(labels)
        if len(loaders) > 1:
            results.update(score(probs, labels, num_classes, f"test_{name}/"))
    results.update(score(torch.cat(all_probs), torch.cat(all_labels), num_classes, "test/"))
    if novel:
        results.update(novel_attack_recall(dict(zip(loaders, zip(all_probs, all_labels))), novel))
    return results


def novel_attack_recall(scored: dict[str, tuple[torch.Tensor, torch.Tensor]],
                        novel: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of attacks flagged (predicted as any non-benign class), separately for attack types the
    training split had (`known`) and those it never saw (`novel`): `test/novel_attack_recall`, ...
    Benign is class 0 (the preprocessing puts benign names first)."""
    flagged, is_novel, is_attack = [], [], []
    for name, (probs, labels) in scored.items():
        if name in novel:
            flagged.append(probs.argmax(-1).numpy() != 0)
            is_novel.append(novel[name])
            is_attack.append(labels.numpy() != 0)
    if not flagged:
        return {}
    flagged, is_novel, is_attack = map(np.concatenate, (flagged, is_novel, is_attack))
    known = is_attack & ~is_novel
    results = {"test/novel_attack_rows": int(is_novel.sum()), "test/known_attack_rows": int(known.sum())}
    if is_novel.any():
        results["test/novel_attack_recall"] = float(flagged[is_novel].mean())
    if known.any():
        results["test/known_attack_recall"] = float(flagged[known].mean())
    return results
