"""Scoring a trained model on held-out data: probabilities, then torchmetrics over every test set
together and over each on its own."""

from __future__ import annotations

import logging
import warnings
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from mstr.training.metrics import compute_with_fpr, detection_metrics, scores_for

log = logging.getLogger("mstr.evaluation")

Scored = tuple[torch.Tensor, torch.Tensor]  # (probabilities [N, C], labels [N])


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader) -> Scored:
    """(probabilities [N, C], labels [N]) on the CPU, computed on the model's device in eval mode."""
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
    """Metrics of predictions this process holds in full (every test row): never synced with other
    processes, so scoring on rank zero after DDP training neither waits for the other ranks nor sends
    CPU tensors over a GPU-only backend."""
    metrics = detection_metrics(num_classes, prefix, sync_on_compute=False)
    metrics.update(scores_for(probs, num_classes), labels)
    with warnings.catch_warnings():  # torchmetrics' warning of a missing class: `without_undefined` says it
        warnings.filterwarnings("ignore", message="No (positive|negative) samples in targets")
        return without_undefined(compute_with_fpr(metrics), probs, labels, num_classes, prefix)


def without_undefined(values: dict[str, float], probs: torch.Tensor, labels: torch.Tensor, num_classes: int,
                      prefix: str) -> dict[str, float]:
    """Leaves out the metrics that the rows cannot define, where torchmetrics would report 0 (an AUROC
    of 0 reads as a perfectly inverted model): on a set without attack flows recall, F1 and AUROC (and
    precision, when nothing was flagged either); without benign flows specificity, FPR and AUROC.
    A multi-class AUROC is the mean over the classes the set holds (`PresentClassesAUROC`)."""
    present = torch.bincount(labels, minlength=num_classes) > 0
    undefined = []
    if num_classes == 2:
        if not present[1]:
            undefined += ["recall", "f1", "auroc"] + ([] if (probs.argmax(-1) == 1).any() else ["precision"])
        if not present[0]:
            undefined += ["specificity", "fpr", "auroc"]
    elif present.sum() < 2:
        undefined.append("auroc")
    if undefined:
        held = ("no attack flows" if not present[1] else "no benign flows") if num_classes == 2 \
            else "flows of one class only"
        names = list(dict.fromkeys(undefined))
        log.warning("%s: the set holds %s, so %s %s undefined and left out", prefix.rstrip("/"), held,
                    ", ".join(names), "is" if len(names) == 1 else "are")
    return {k: v for k, v in values.items() if k.removeprefix(prefix) not in undefined}


def each_and_all(sets: dict[str, Scored]) -> dict[Optional[str], Scored]:
    """Every set together (key None) and, when there are several, each on its own (by name)."""
    together = (torch.cat([p for p, _ in sets.values()]), torch.cat([y for _, y in sets.values()]))
    return {None: together, **(sets if len(sets) > 1 else {})}


def as_alerts(probs: torch.Tensor, labels: torch.Tensor, benign_classes: int) -> Scored:
    """A multi-class model's predictions as the exported detector decides: attack vs benign, by the
    attack score 1 - P(benign classes) (`mstr.deploy.stream`), not by the most likely class."""
    benign = probs[:, :benign_classes].sum(-1)
    return torch.stack([benign, 1.0 - benign], -1), (labels >= benign_classes).long()


def score_sets(sets: dict[str, Scored], num_classes: int, stage: str = "test",
               subsets: Optional[dict[str, dict[str, np.ndarray]]] = None,
               benign_classes: int = 1) -> dict[str, float]:
    """`<stage>/...` over all sets together and, with several sets, `<stage>_<name>/...` for each; with
    row `subsets` (see `FlowDataModule.test_subsets`), also the metrics on those rows. A multi-class
    model also gets `<stage>/alerts/...`: the binary metrics of the alerts its detector raises, since
    its macro-averaged FPR says little of how many benign flows would be flagged."""
    results: dict[str, float] = {}
    for name, (probs, labels) in each_and_all(sets).items():
        prefix = f"{stage}/" if name is None else f"{stage}_{name}/"
        results.update(score(probs, labels, num_classes, prefix))
        if num_classes > 2:
            results.update(score(*as_alerts(probs, labels, benign_classes), 2, f"{prefix}alerts/"))
    return {**results, **subset_metrics(sets, subsets or {})}


def _joined(scored: dict[str, tuple[torch.Tensor, torch.Tensor]], masks: dict[str, np.ndarray]):
    """(predicted class, label, mask) over the test sets that have a mask, concatenated."""
    names = [n for n in scored if n in masks]
    if not names:
        return None
    predicted = np.concatenate([scored[n][0].argmax(-1).numpy() for n in names])
    labels = np.concatenate([scored[n][1].numpy() for n in names])
    return predicted, labels, np.concatenate([masks[n] for n in names])


def subset_metrics(scored: dict[str, tuple[torch.Tensor, torch.Tensor]],
                   subsets: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """- novel_attack, known_attack: the share of attacks flagged (predicted as any non-benign class; benign
      is class 0) among attack types that train and validation never had, and among those the training
      split had: `test/novel_attack_recall`, `test/known_attack_recall` (and their row counts);
    - copied: accuracy on test rows with a feature-identical training row and on the rest:
      `test/copied_rows_acc`, `test/fresh_rows_acc` (how much of a score is memory);
    - mixed_context: accuracy on test rows whose window holds an earlier flow of another class and on
      the rest: `test/mixed_context_acc`, `test/same_context_acc` (how much of a score is read off the
      context), with `test/mixed_context_rows`."""
    results: dict[str, float] = {}
    joined = _joined(scored, subsets.get("novel_attack", {}))
    if joined is not None:
        predicted, _, novel = joined
        flagged, known = predicted != 0, _joined(scored, subsets["known_attack"])[2]
        results.update({"test/novel_attack_rows": int(novel.sum()), "test/known_attack_rows": int(known.sum())})
        if novel.any():
            results["test/novel_attack_recall"] = float(flagged[novel].mean())
        if known.any():
            results["test/known_attack_recall"] = float(flagged[known].mean())
    for subset, rows, inside, outside in (("copied", "copied_rows", "copied_rows_acc", "fresh_rows_acc"),
                                          ("mixed_context", "mixed_context_rows", "mixed_context_acc",
                                           "same_context_acc")):
        joined = _joined(scored, subsets.get(subset, {}))
        if joined is None:
            continue
        predicted, labels, mask = joined
        right = predicted == labels
        results[f"test/{rows}"] = int(mask.sum())
        if mask.any():
            results[f"test/{inside}"] = float(right[mask].mean())
        if (~mask).any():
            results[f"test/{outside}"] = float(right[~mask].mean())
    return results
