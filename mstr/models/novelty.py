"""A novelty gate beside the classifier: flag flows that look like no benign training flow.

A classifier recognises the attacks it was shown; an attack of a new type often looks like neither
class and lands on the benign side by default. The gate measures how far a flow's features (the
newest flow of the window) lie from the benign training flows, as a Mahalanobis distance under a
shrunk covariance, and the detector flags a flow when the classifier OR the gate says so. The
gate's threshold is set on benign *validation* flows to a false-alarm budget (`novelty.fpr`), so it
is chosen without seeing any test flow. Plain torch: it exports and runs with the model.
"""

from __future__ import annotations

import torch
from torch import nn


class MahalanobisGate(nn.Module):
    """distance(x) = (x - mean)^T precision (x - mean) over `columns` of the newest flow."""

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor, columns: torch.Tensor, threshold: float):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("precision", torch.as_tensor(precision, dtype=torch.float32))
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.long))
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        centred = x[:, -1, self.columns] - self.mean
        return ((centred @ self.precision) * centred).sum(-1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Novelty in (0, 1), 0.5 exactly at the threshold (monotone in the distance)."""
        d = self.distance(x).clamp_min(0.0)
        return d / (d + self.threshold)


class GatedDetector(nn.Module):
    """A binary classifier and a novelty gate: P(attack) = max(classifier's, gate's score), returned as
    logits (log-probabilities), so every scoring path treats it like the classifier alone."""

    def __init__(self, classifier: nn.Module, gate: MahalanobisGate):
        super().__init__()
        self.classifier, self.gate = classifier, gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attack = torch.maximum(self.classifier(x).softmax(-1)[:, 1], self.gate.score(x))
        return torch.stack([1.0 - attack, attack], dim=1).clamp_min(1e-7).log()
