"""`FlowTable`: the one in-memory form every reader produces and everything downstream consumes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from mstr.errors import DataError


@dataclass
class FlowTable:
    """A table of flow records plus the roles of its columns.

    `frame` holds at least the feature columns and the label column; `time_col` (seconds or a
    datetime) and `group_col` (e.g. source host) are optional and only order the windows, they are
    never model inputs. `label_col` holds the class name of each flow (a string); `benign` lists the
    names that mean normal traffic, everything else is an attack in the binary task.
    `strata_col` (optional, never a model input) holds the class that per-class cuts go by where it is
    finer than the label, e.g. the attack type behind a binary label (see `mstr.data.splits`).
    `source` names where the rows came from, for error messages and the leakage audit.
    `family_col` (optional) holds a finer name than the task's label (e.g. the attack type under the
    binary task): never an input, it lets a report single out attack types the training split lacks.
    """

    frame: pd.DataFrame
    numeric_cols: list[str]
    categorical_cols: list[str]
    label_col: str = "label"
    time_col: Optional[str] = None
    group_col: Optional[str] = None
    family_col: Optional[str] = None
    strata_col: Optional[str] = None
    read_as: Optional[str] = None  # the column layout (flows preset) the rows were read as, where inferred
    file_format: Optional[str] = None  # csv | tsv | parquet | zeek: the files the rows came from, where known
    benign: Sequence[str] = ("benign",)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        needed = [*self.numeric_cols, *self.categorical_cols, self.label_col]
        needed += [c for c in (self.time_col, self.group_col, self.strata_col, self.family_col) if c]
        missing = [c for c in needed if c not in self.frame.columns]
        if missing:
            raise DataError(
                f"{self.source}: missing column(s) {missing}; present columns are "
                f"{list(self.frame.columns)[:20]}{'...' if len(self.frame.columns) > 20 else ''}"
            )

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def feature_cols(self) -> list[str]:
        return [*self.numeric_cols, *self.categorical_cols]

    @property
    def labels(self) -> np.ndarray:
        return self.frame[self.label_col].astype(str).to_numpy()

    @property
    def strata(self) -> np.ndarray:
        """The class of each row that per-class cuts go by: `strata_col` where set, else the label."""
        return self.frame[self.strata_col or self.label_col].astype(str).to_numpy()

    def is_attack(self) -> np.ndarray:
        """Boolean per row: True where the label is not one of the benign names."""
        return ~np.isin(self.labels, np.asarray(list(self.benign), dtype=str))

    def novel_attacks(self, train: "FlowTable") -> Optional[np.ndarray]:
        """Boolean per row: an attack whose family (type) never occurs in `train`; None without families."""
        if not self.family_col or not train.family_col:
            return None
        seen = set(train.frame[train.family_col].astype(str))
        return self.is_attack() & ~self.frame[self.family_col].astype(str).isin(seen).to_numpy()

    def take(self, rows: np.ndarray, source: Optional[str] = None) -> "FlowTable":
        """A new table of the given rows (positional), with the same column roles."""
        return replace(
            self,
            frame=self.frame.iloc[np.asarray(rows)].reset_index(drop=True),
            source=source or self.source,
        )


def concat_tables(tables: Sequence[FlowTable], source: str) -> FlowTable:
    """Stack tables that share column roles (e.g. several files of one dataset)."""
    if not tables:
        raise DataError(f"{source}: no tables to combine")
    first = tables[0]
    frame = pd.concat([t.frame for t in tables], ignore_index=True)
    return replace(first, frame=frame, source=source)
