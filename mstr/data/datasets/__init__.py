"""Named datasets. Each module has a `load(...) -> DatasetSplits` that Hydra instantiates from
`data.source` (`_target_: mstr.data.datasets.<name>.load`).

A loader knows where a dataset's files are, its label mapping for `task=binary|multiclass`, and its
official split. It does not fit anything: preprocessing (imputation included) is fit later on the
training split only. Every loader builds its tables with `make_table`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from mstr.data.readers import coerce_numeric, to_seconds
from mstr.data.splits import STRATIFIED
from mstr.data.table import FlowTable
from mstr.deploy.features import MISSING_CATEGORY
from mstr.errors import ConfigError, DataError
from mstr.options import TASKS

BINARY_BENIGN = "benign"
BINARY_ATTACK = "attack"


@dataclass
class DatasetSplits:
    """What a loader returns.

    train: the training rows (validation is carved from them by the DataModule unless `val` is set).
    tests: one table per test file / split, by name (its file stem); metrics are reported over all
        of them together and per name.
    holdout: the rule (`mstr.data.splits.HOLDOUTS`) the DataModule carves validation from train by:
        the one the loader cut its test split by, where it cut one.
    notes: log lines worth showing the user (e.g. "UNSW-NB15: only one file, stratified split").
    """

    train: FlowTable
    tests: dict[str, FlowTable]
    val: Optional[FlowTable] = None
    holdout: str = STRATIFIED
    notes: list[str] = field(default_factory=list)

    @property
    def temporal(self) -> bool:
        """The rows have time order: validation is cut by time and windows follow it."""
        return self.holdout != STRATIFIED


def dataset_folder(data_dir, folder_name: str, fetch_name: str) -> Path:
    """`data_dir/folder_name`, or a one-line error that says where the data root comes from and how
    to fill it (`python -m mstr.data.fetch <fetch_name>`)."""
    folder = Path(str(data_dir)).expanduser() / folder_name
    if not folder.is_dir():
        from_env = str(data_dir) == os.environ.get("MSTR_DATA_DIR", "data")  # the default, not an override
        root = (f"paths.data_dir={data_dir}: the environment variable MSTR_DATA_DIR, else ./data" if from_env
                else f"paths.data_dir={data_dir}, as given")
        setting = "MSTR_DATA_DIR" if from_env else "paths.data_dir"
        raise DataError(f"{folder}: no such folder; the data root ({root}) must hold {folder_name}/: set {setting} "
                        f"to the folder that holds it, or download it there: python -m mstr.data.fetch {fetch_name} "
                        f"--root {data_dir}")
    return folder


def check_task(task: str, key: str = "data.task") -> None:
    if task not in TASKS:
        raise ConfigError(f"{key}={task!r} is not one of {list(TASKS)}")


def make_table(frame: pd.DataFrame, *, classes: pd.Series, is_benign: np.ndarray, benign: Sequence[str],
               task: str, numeric: Sequence[str], categorical: Sequence[str], source: str, notes: list[str],
               label_col: str = "label", time_col: Optional[str] = None, group_col: Optional[str] = None,
               strata_col: Optional[str] = None, family_col: Optional[str] = None) -> FlowTable:
    """The one way a loader turns a frame into a `FlowTable`.

    classes: each row's class name, missing (NA) where the row has no label: such rows are dropped,
    with a note. is_benign: which rows are normal traffic. The label column becomes the class name
    (multiclass, `benign` naming the normal classes) or benign/attack (binary); with `strata_col` the
    class name is also kept in that column, so that per-class cuts can follow it in the binary task;
    `family_col` names a column of `frame` with a finer name still (the attack type), kept for reports.
    Categories and the group column become stripped text; numeric columns become float64 (`coerce_numeric`), missing and
    infinite values kept for the preprocessing to fill with training medians; the time column becomes seconds. Errors
    name a row by `frame`'s index (`mstr.data.readers.data_row`), which the table drops.
    """
    check_task(task)
    frame = frame.copy()
    for col in [*categorical, *filter(None, [group_col])]:
        frame[col] = frame[col].fillna("").astype(str).str.strip()
    frame, found = coerce_numeric(frame, list(numeric), source)
    notes.extend(found)
    classes = pd.Series(classes, index=frame.index)
    is_benign = np.asarray(is_benign, dtype=bool)
    unlabelled = classes.isna().to_numpy()
    if unlabelled.any():
        notes.append(f"{source}: dropped {int(unlabelled.sum())} row(s) without a label")
        frame, classes, is_benign = frame[~unlabelled].copy(), classes[~unlabelled], is_benign[~unlabelled]
    if frame.empty:
        raise DataError(f"{source}: no labelled rows in column {label_col!r}")
    if time_col:
        frame[time_col] = to_seconds(frame[time_col], time_col, source)
    if strata_col:
        frame[strata_col] = classes.astype(str).to_numpy()
    if task == "binary":
        frame[label_col] = np.where(is_benign, BINARY_BENIGN, BINARY_ATTACK)
        benign = (BINARY_BENIGN,)
    else:
        frame[label_col] = classes.astype(str).to_numpy()
    return FlowTable(frame=frame.reset_index(drop=True), numeric_cols=list(numeric),
                     categorical_cols=list(categorical), label_col=label_col, time_col=time_col, group_col=group_col,
                     strata_col=strata_col, family_col=family_col, benign=tuple(benign), source=source)


def category_text(values: pd.Series) -> pd.Series:
    """Labels and categories as stripped text, missing as None. Whole numbers read as floats (a
    column with gaps) lose their ".0", so label 1 and protocol 6 read the same in every file."""
    if pd.api.types.is_float_dtype(values) and np.all(np.mod(values.dropna(), 1) == 0):
        values = values.astype("Int64")
    return values.astype(object).where(values.notna(), None).map(clean_category)


def clean_category(value) -> Optional[str]:
    """One category text as `mstr.detect` reads it: stripped, missing tokens ("-", "NaN", ...) as None."""
    text = None if value is None else str(value).strip()
    return None if text is None or text.lower() in MISSING_CATEGORY else text
