"""Detection metrics through torchmetrics: one collection instance per stage.

Binary: the attack class (index 1) is positive. Multi-class: macro averages over classes.
FPR is 1 - specificity: the share of benign (or, macro, of negatives) flagged.
"""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    AUROC,
    Accuracy,
    F1Score,
    Precision,
    Recall,
    Specificity,
)



def detection_metrics(num_classes: int, prefix: str, auroc: bool = True, **options) -> MetricCollection:
    """Collection over (probabilities [N, C], targets [N]); use `compute_with_fpr` to read it.
    `options` go to every metric (e.g. `sync_on_compute=False`)."""
    if num_classes == 2:
        kw: dict = {"task": "binary", **options}
    else:
        kw = {"task": "multiclass", "num_classes": num_classes, "average": "macro", **options}
    metrics = {
        "acc": Accuracy(**(kw if num_classes == 2 else {**kw, "average": "micro"})),
        "precision": Precision(**kw),
        "recall": Recall(**kw),
        "f1": F1Score(**kw),
        "specificity": Specificity(**kw),
    }
    if auroc:
        metrics["auroc"] = AUROC(**kw)
    return MetricCollection(metrics, prefix=prefix)


def scores_for(probs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """What the binary metrics take (P(attack)); multi-class ones take the full matrix."""
    return probs[:, 1] if num_classes == 2 else probs


def compute_with_fpr(collection: MetricCollection) -> dict[str, float]:
    values = {k: float(v) for k, v in collection.compute().items()}
    prefix = collection.prefix or ""
    values[f"{prefix}fpr"] = 1.0 - values[f"{prefix}specificity"]
    return values
