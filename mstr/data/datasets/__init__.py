"""Named datasets. Each module has a `load(...) -> DatasetSplits` that Hydra instantiates from
`data.source` (`_target_: mstr.data.datasets.<name>.load`).

A loader knows where a dataset's files are, its label mapping for `task=binary|multiclass`, and its
official split. It does not fit anything: preprocessing is fit later on the training split only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mstr.data.table import FlowTable

BINARY_BENIGN = "benign"
BINARY_ATTACK = "attack"
TASKS = ("binary", "multiclass")


@dataclass
class DatasetSplits:
    """What a loader returns.

    train: the training rows (validation is carved from them by the DataModule unless `val` is set).
    tests: one table per test file / split, by name (its file stem); metrics are reported over all
        of them together and per name.
    temporal: True when the rows have real time order: validation is then the newest part of train
        and windows follow time; False: validation is a stratified random carve.
    notes: log lines worth showing the user (e.g. "UNSW-NB15: only one file, stratified split").
    """

    train: FlowTable
    tests: dict[str, FlowTable]
    val: Optional[FlowTable] = None
    temporal: bool = False
    notes: list[str] = field(default_factory=list)
