"""Where each column stands on the feature axis that the backbone's feature convolutions slide along.

A kernel of 3 or 5 reads a column with its neighbours, so which columns are neighbours is part of
the model. Three orders (`data.column_order`), each fixed on the training split alone:

  data        the dataset's own column order: flow records group related fields (byte counts, TTLs,
              connection counts) by hand, though not always the ones that must be read together
  dependence  columns that tell the most about each other stand together: the normalised mutual
              information of each pair of columns (values cut into quantile bins, categories as they
              are) on up to `DEPENDENCE_ROWS` training rows, its complement as a distance, and the
              leaves of an average-linkage tree in their optimal order (Bar-Joseph et al. 2001), which
              puts the most dependent columns next to each other along the whole axis
  shuffled    a seeded random order (the ablation's control: what the convolutions do when
              neighbouring columns have nothing to do with each other)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mstr.errors import ConfigError
from mstr.options import COLUMN_ORDERS

DEPENDENCE_ROWS = 20_000  # enough to rank pairs of columns; 87 CIC-IDS2017 columns order in seconds
DEPENDENCE_BINS = 16


def column_order(rule: str, columns: list[str], numeric: dict[str, np.ndarray],
                 categorical: dict[str, np.ndarray], seed: int = 0) -> list[str]:
    """`columns` (the data's order) in the order of `rule`. `numeric` / `categorical`: each column's
    training values (numeric ones with their gaps already filled)."""
    if rule not in COLUMN_ORDERS:
        raise ConfigError(f"data.column_order={rule!r}: must be one of {list(COLUMN_ORDERS)}")
    if rule == "data" or len(columns) < 3:
        return list(columns)
    if rule == "shuffled":
        return [columns[i] for i in np.random.default_rng(seed).permutation(len(columns))]
    rows = len(next(iter({**numeric, **categorical}.values())))
    pick = np.sort(np.random.default_rng(0).permutation(rows)[:DEPENDENCE_ROWS])
    codes = np.stack([_codes(numeric[c][pick]) if c in numeric else pd.factorize(categorical[c][pick])[0]
                      for c in columns])
    return [columns[i] for i in seriate(1.0 - normalised_mutual_information(codes))]


def _codes(values: np.ndarray) -> np.ndarray:
    """A numeric column's values as quantile-bin codes (one code per distinct value where it has few)."""
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, DEPENDENCE_BINS + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right")


def normalised_mutual_information(codes: np.ndarray) -> np.ndarray:
    """[columns, columns]: I(a; b) / mean(H(a), H(b)) of every pair of coded columns (rows of `codes`),
    from their joint counts; 1 on the diagonal, 0 for a pair involving a constant column. scikit-learn's
    `normalized_mutual_info_score` gives the same numbers (a test checks) but took 5 s for 40 columns of
    20k rows, where one bincount per pair takes 0.1 s."""
    n_cols, n_rows = codes.shape
    codes = np.stack([np.unique(c, return_inverse=True)[1] for c in codes])  # codes 0..k-1 per column
    sizes = codes.max(axis=1) + 1
    entropy = np.array([_entropy(np.bincount(c) / n_rows) for c in codes])
    nmi = np.eye(n_cols)
    for i in range(n_cols):
        for j in range(i + 1, n_cols):
            joint = np.bincount(codes[i] * sizes[j] + codes[j], minlength=sizes[i] * sizes[j]) / n_rows
            mean = (entropy[i] + entropy[j]) / 2
            mutual = entropy[i] + entropy[j] - _entropy(joint)
            nmi[i, j] = nmi[j, i] = mutual / mean if mean > 0 else 0.0
    return np.clip(nmi, 0.0, 1.0)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def seriate(distance: np.ndarray) -> list[int]:
    """Indices of a symmetric distance matrix in the optimal leaf order of its average-linkage tree."""
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    condensed = squareform(distance, checks=False)
    tree = optimal_leaf_ordering(linkage(condensed, method="average"), condensed)
    return leaves_list(tree).tolist()
