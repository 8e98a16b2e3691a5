"""Fitting the novelty gate (mstr.models.novelty) on a set-up DataModule: benign training flows give
the centre and a shrunk covariance (Ledoit-Wolf: well-conditioned even where one-hot columns are
nearly constant), benign validation flows the threshold for a false-alarm budget."""

from __future__ import annotations

import numpy as np
import torch

from mstr.models.novelty import MahalanobisGate


def gate_columns(feature_names: list[str]) -> list[int]:
    """The scaled values and one-hots; bin encodings and frequent-value indicators only repeat the
    values they encode."""
    return [i for i, name in enumerate(feature_names) if "#bin" not in name and "#is" not in name]


def fit_gate(dm, fpr: float) -> MahalanobisGate:
    from sklearn.covariance import LedoitWolf

    if not 0.0 < fpr < 1.0:
        raise ValueError(f"novelty.fpr={fpr}: must be in (0, 1)")
    if dm.num_classes != 2 or dm.class_names[0] not in dm.preprocessor.benign:
        raise ValueError("the novelty gate needs the binary task with a benign class")
    columns = gate_columns(dm.preprocessor.feature_names)
    train, val = dm.dataset("train"), dm.dataset("val")
    benign = train.features[train.labels == 0][:, columns].numpy().astype(np.float64)
    fitted = LedoitWolf().fit(benign)
    gate = MahalanobisGate(torch.from_numpy(fitted.location_), torch.from_numpy(fitted.precision_),
                           torch.tensor(columns), threshold=1.0)
    with torch.no_grad():
        distances = gate.distance(val.features[val.labels == 0].unsqueeze(1)).numpy()
    gate.threshold.fill_(float(np.quantile(distances, 1.0 - fpr)))
    return gate
