"""Detection metrics through torchmetrics: one collection instance per stage.

Binary: the attack class (index 1) is positive. Multi-class: macro averages over classes; the AUROC
over the classes the targets hold (an absent class has none, where torchmetrics would average in a 0).
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
from torchmetrics.classification.auroc import MulticlassAUROC
from torchmetrics.utilities.data import dim_zero_cat


class PresentClassesAUROC(MulticlassAUROC):
    """Macro AUROC over the classes present in the targets (states synced across processes, as in any
    compute): a class without rows has no AUROC, and counting it as 0 would understate the model."""

    def __init__(self, num_classes: int, **options):
        super().__init__(num_classes=num_classes, average="none", **options)

    def compute(self) -> torch.Tensor:
        present = torch.bincount(dim_zero_cat(self.target), minlength=self.num_classes) > 0
        return super().compute()[present].mean()



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
        metrics["auroc"] = AUROC(**kw) if num_classes == 2 else PresentClassesAUROC(num_classes, **options)
    return MetricCollection(metrics, prefix=prefix)


def scores_for(probs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """What the binary metrics take (P(attack)); multi-class ones take the full matrix."""
    return probs[:, 1] if num_classes == 2 else probs


def compute_with_fpr(collection: MetricCollection) -> dict[str, float]:
    values = {k: float(v) for k, v in collection.compute().items()}
    prefix = collection.prefix or ""
    values[f"{prefix}fpr"] = 1.0 - values[f"{prefix}specificity"]
    return values
