"""Every cut of a table into kept and held-out rows: a loader's test split and the DataModule's
validation carve use the same rules, so validation is cut the way test is.

Rules (`HOLDOUTS`):
    time            the newest `fraction` of all rows by time
    per_class_time  the newest `fraction` of each class's rows: for data where classes live in short,
                    separate time spans (CIC-IDS2017), so that every class with two or more rows is on
                    both sides, while each class's held-out rows are still later than its kept ones
    stratified      a seeded random `fraction` of each class (data without time order)
A class with a single row stays on the kept side. Cuts return row positions in the table's own order.

`unseen_types_mask` is a cut of another kind: whole attack types, for a validation split that asks what
a test set of new attack types asks (KDDTest+), where a random carve of known types is nearly solved by
any model and cannot tell settings apart.
Plain numpy and pandas; no Lightning.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mstr.data.table import FlowTable
from mstr.errors import ConfigError

TIME, PER_CLASS_TIME, STRATIFIED = "time", "per_class_time", "stratified"
HOLDOUTS = (TIME, PER_CLASS_TIME, STRATIFIED)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a seeded per-class random `fraction` of rows; a class with one row stays out."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        k = int(round(len(rows) * fraction)) if len(rows) > 1 else 0
        mask[rng.permutation(rows)[:k]] = True
    return mask


def newest(times: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the newest `fraction` of rows (ties broken by row order)."""
    order = np.argsort(times, kind="stable")
    mask = np.zeros(len(times), dtype=bool)
    mask[order[int(round(len(times) * (1.0 - fraction))):]] = True
    return mask


def newest_per_class(labels: np.ndarray, times: Optional[np.ndarray], fraction: float) -> np.ndarray:
    """Boolean mask of each class's newest `fraction` of rows (at least one, never all); without
    times, row order is time order."""
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        if times is not None:
            rows = rows[np.argsort(times[rows], kind="stable")]
        n_held = min(max(int(round(len(rows) * fraction)), 1), len(rows) - 1) if len(rows) > 1 else 0
        mask[rows[len(rows) - n_held:]] = True
    return mask


def holdout_mask(table: FlowTable, fraction: float, rule: str, seed: int = 0) -> np.ndarray:
    """Which rows of `table` a cut by `rule` holds out (see the module doc)."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"holdout fraction {fraction}: must be in (0, 1)")
    times = table.frame[table.time_col].to_numpy() if table.time_col else None
    if rule == TIME:
        if times is None:
            raise ConfigError(f"{table.source}: a time cut needs a time column")
        return newest(times, fraction)
    if rule == PER_CLASS_TIME:
        return newest_per_class(table.strata, times, fraction)
    if rule == STRATIFIED:
        return stratified_holdout(table.strata, fraction, seed)
    raise ConfigError(f"holdout rule {rule!r}: must be one of {list(HOLDOUTS)}")


def unseen_types_mask(table: FlowTable, share: float, seed: int) -> tuple[np.ndarray, list[str]]:
    """(boolean mask of the rows of whole attack types, those types), the types drawn in a seeded random
    order and taken while their rows fit in `share` of the table's attack rows. A class keeps at least
    one of its types, so that every class is still trained on; a type larger than what is left of the
    budget is passed over (NSL-KDD's neptune alone is 70% of its attacks)."""
    if not table.family_col:
        raise ConfigError(f"{table.source}: names no attack types (no family column), so no types can be held "
                          "out for validation; set data.val_unseen_types=0 (only data with attack types, e.g. NSL-KDD)")
    attack = table.is_attack()
    family = table.frame[table.family_col].astype(str).to_numpy()
    labels = table.labels
    types, first, counts = np.unique(family[attack], return_index=True, return_counts=True)
    label_of = labels[attack][first]
    left = {lab: int((label_of == lab).sum()) for lab in np.unique(label_of)}
    budget = share * int(attack.sum())
    held: list[str] = []
    for i in np.random.default_rng(seed).permutation(len(types)):
        if counts[i] <= budget and left[label_of[i]] > 1:
            held.append(str(types[i]))
            budget -= counts[i]
            left[label_of[i]] -= 1
    if not held:
        raise ConfigError(f"{table.source}: no attack type fits in data.val_unseen_types={share} of its "
                          f"{int(attack.sum())} attack rows (the smallest has {int(counts.min()) if len(counts) else 0}); "
                          "raise it")
    return attack & np.isin(family, held), sorted(held)


def hold_out(table: FlowTable, fraction: float, rule: str, seed: int = 0,
             held_source: Optional[str] = None, kept_source: Optional[str] = None) -> tuple[FlowTable, FlowTable]:
    """(kept rows, held-out rows) of `table` cut by `rule`, each in the table's row order."""
    mask = holdout_mask(table, fraction, rule, seed)
    return table.take(np.flatnonzero(~mask), kept_source), table.take(np.flatnonzero(mask), held_source)
