"""UNSW-NB15 (Moustafa & Slay, 2015): the published train/test partition files, no timestamps.

The circulated copies (Kaggle and most GitHub mirrors) have the two file names swapped relative to
the paper: `UNSW_NB15_training-set.csv` holds the 82,332-record test partition. So the file names
are not trusted: the bigger file is train. With only one of the files present (the shared data has
only the 82,332-record one) the loader makes a seeded split stratified on `attack_cat` instead,
and says so in the notes, because such results are not comparable to the paper's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mstr.data.datasets import DatasetSplits, check_task, dataset_folder, make_table
from mstr.data.readers import read_table
from mstr.data.splits import stratified_holdout
from mstr.data.table import FlowTable
from mstr.errors import ConfigError, DataError

NAMES = ("UNSW_NB15_training-set", "UNSW_NB15_testing-set")
CATEGORICAL = ["proto", "service", "state"]
NOT_FEATURES = {"id", "attack_cat", "label"}
PAPER_ROWS = {175_341: "train", 82_332: "test"}


def check(data_dir: str | Path, task: str = "binary", **_) -> Path:
    """The settings that can be checked before any file is read (also by `mstr.preflight`); the folder."""
    check_task(task)
    return dataset_folder(data_dir, "unsw_nb15", "unsw_nb15")


def load(
    data_dir: str | Path,
    task: str = "binary",
    test_fraction: float = 0.3,
    seed: int = 0,
    **_,
) -> DatasetSplits:
    """Train/test tables from the partition files in data_dir/unsw_nb15 (see the module doc)."""
    folder = check(data_dir, task)
    found = [p for p in (_find(folder, name) for name in NAMES) if p is not None]
    if not found:
        raise DataError(
            f"{folder}: none of {[n + '.csv(.gz)' for n in NAMES]} found; download the "
            "UNSW-NB15 partition CSVs into this folder"
        )
    frames = {path: _read(path) for path in found}
    notes: list[str] = []
    if len(found) == 2:
        train_path, test_path = sorted(found, key=lambda p: len(frames[p]), reverse=True)
        notes.append(
            f"UNSW-NB15: train = {train_path.name} ({len(frames[train_path]):,} rows), test = "
            f"{test_path.name} ({len(frames[test_path]):,} rows), chosen by row count because "
            "the circulated file names are swapped relative to the paper"
        )
        train = _table(frames[train_path], task, str(train_path), notes)
        tests = {_stem(test_path): _table(frames[test_path], task, str(test_path), notes)}
        return DatasetSplits(train=train, tests=tests, notes=notes)

    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction={test_fraction} must be between 0 and 1")
    (path,) = found
    frame = frames[path]
    role = PAPER_ROWS.get(len(frame))
    notes.append(
        f"UNSW-NB15: only {path.name} ({len(frame):,} rows"
        + (f", by row count the paper's {role.upper()} partition despite its name" if role else "")
        + f") is present; using a stratified split on attack_cat (test_fraction={test_fraction}, "
        f"seed={seed}); results are not comparable to the official train/test partition"
    )
    # a category with a single row stays in train, so small samples of the file still split
    test_mask = stratified_holdout(frame["attack_cat"].astype(str).to_numpy(), test_fraction, seed)
    table = _table(frame, task, str(path), notes)
    tests = {f"{_stem(path)}-holdout": table.take(np.flatnonzero(test_mask), f"{path} (holdout split)")}
    train = table.take(np.flatnonzero(~test_mask), f"{path} (train split)")
    return DatasetSplits(train=train, tests=tests, notes=notes)


def _find(folder: Path, name: str) -> Path | None:
    for suffix in (".csv", ".csv.gz"):
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return None


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".csv")


def _read(path: Path) -> pd.DataFrame:
    """Read one partition file and normalise the two label columns."""
    frame = read_table(path, format="csv")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ("attack_cat", "label", *CATEGORICAL) if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; is this a UNSW-NB15 partition file?")
    label = pd.to_numeric(frame["label"], errors="coerce")
    bad = ~label.isin([0, 1])
    if bad.any():
        row = int(bad.to_numpy().argmax())
        value = frame["label"].iloc[row]
        shown = "empty (a line cut short?)" if pd.isna(value) else repr(str(value))
        raise DataError(f"{path}: column 'label' data row {row + 1} is {shown}; expected 0 (normal) or 1 (attack)")
    frame["label"] = label.astype(int)
    cat = frame["attack_cat"].fillna("").astype(str).str.strip()
    # The raw (non-partition) UNSW CSVs leave attack_cat empty for normal rows.
    frame["attack_cat"] = cat.mask((cat == "") & (frame["label"] == 0), "Normal")
    return frame


def _table(frame: pd.DataFrame, task: str, source: str, notes: list[str]) -> FlowTable:
    classes, is_benign = frame["attack_cat"], (frame["label"] == 0).to_numpy()
    frame = frame.drop(columns=["id", "attack_cat", "label"], errors="ignore")
    numeric = [c for c in frame.columns if c not in NOT_FEATURES and c not in CATEGORICAL]
    return make_table(frame, classes=classes, is_benign=is_benign, benign=("Normal",), task=task,
                      numeric=numeric, categorical=CATEGORICAL, source=source, notes=notes)
