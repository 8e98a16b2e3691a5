"""CIC-IDS2017 flows: the CNS2022 corrected re-extraction, or the original CIC CSVs.

Both layouts are accepted. The original MachineLearningCVE / TrafficLabelling CSVs put a leading
space on most column names, call the endpoints `Source IP` / `Destination Port`, repeat
`Fwd Header Length` and hold `Infinity`/`NaN`; names are stripped and aliased to the corrected
layout, the repeated column is dropped, and non-finite values are repaired by `coerce_numeric`.

Identifiers (`id`, `Flow ID`, IPs, `Src Port`, `Timestamp`, `Attempted Category`) are not
features: they identify the testbed hosts and the attack schedule, so a model would learn those.
`Timestamp` is kept as the time column (float seconds) and `Src IP` as the group column.

The split is a per-class time split: for each class, its oldest (1 - test_fraction) flows train
and its newest flows test. A single global time cut does not work on this data: the shared copy
is a per-class random sample, and most attack classes live in one short window (DDoS only on
Friday afternoon, the web attacks on one Thursday morning), so a global cut would put whole
classes only in train or only in test. The per-class cut still keeps every test flow of a class
later than all of that class's training flows. Files without a Timestamp column (the original
MachineLearningCVE CSVs) are cut in file order instead, which is capture order there.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mstr.data.datasets import BINARY_ATTACK, BINARY_BENIGN, TASKS, DatasetSplits
from mstr.data.readers import coerce_numeric, read_table, resolve_paths, to_seconds
from mstr.data.table import FlowTable, concat_tables
from mstr.errors import ConfigError, DataError

PATTERNS = ("*.csv", "*.csv.gz")
ALIASES = {
    "Source IP": "Src IP",
    "Destination IP": "Dst IP",
    "Source Port": "Src Port",
    "Destination Port": "Dst Port",
}
NOT_FEATURES = ["id", "Flow ID", "Src IP", "Dst IP", "Src Port", "Timestamp", "Attempted Category"]
CATEGORICAL = ["Protocol"]
LABEL, TIME, GROUP = "Label", "Timestamp", "Src IP"


def load(
    data_dir: str | Path,
    task: str = "binary",
    files: Optional[str | Sequence[str]] = None,
    test_fraction: float = 0.3,
    **_,
) -> DatasetSplits:
    """All CSVs in data_dir/cic_ids2017_improved (or `files`: paths, folders or globs)."""
    if task not in TASKS:
        raise ConfigError(f"data.task={task!r} is not one of {list(TASKS)}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction={test_fraction} must be between 0 and 1")
    folder = Path(data_dir).expanduser() / "cic_ids2017_improved"
    entries = [folder] if files is None else [files] if isinstance(files, str) else list(files)
    paths = sorted({p for entry in entries for p in resolve_paths(_under(folder, entry), PATTERNS)})
    notes: list[str] = []
    tables = [_load_file(p, notes) for p in paths]
    _check_same_columns(tables)
    where = folder if files is None else "CIC-IDS2017"
    table = concat_tables(tables, source=f"{where} ({len(paths)} files)")
    if table.time_col:
        table = table.take(np.argsort(table.frame[TIME].to_numpy(), kind="stable"))
    else:
        notes.append(
            "CIC-IDS2017: no Timestamp column; the split follows file order (files sorted by "
            "name) and row order inside each file"
        )
    labels = table.frame[LABEL].to_numpy()
    if task == "binary":
        table.frame[LABEL] = np.where(labels == "BENIGN", BINARY_BENIGN, BINARY_ATTACK)
        table.benign = (BINARY_BENIGN,)
    else:
        table.benign = ("BENIGN",)
    train_rows, test_rows = _per_class_time_split(labels, test_fraction)
    train = table.take(train_rows, f"{table.source} train")
    test = table.take(test_rows, f"{table.source} test")
    notes.append(
        f"CIC-IDS2017: per-class time split, the newest {test_fraction:.0%} of each class's "
        f"flows are test ({len(train):,} train / {len(test):,} test rows); a single time cut "
        "would leave classes that occur in one short time span entirely on one side"
    )
    return DatasetSplits(train=train, tests={"test": test}, temporal=True, notes=notes)


def _under(folder: Path, entry: str | Path) -> str:
    """A relative `files` entry that matches nothing here is looked up in the dataset folder."""
    text = str(entry)
    path = Path(text).expanduser()
    if path.is_absolute() or path.exists() or glob.glob(text):
        return text
    return str(folder / text)


def _check_same_columns(tables: list[FlowTable]) -> None:
    """Files of different layouts (corrected vs original CIC) must not be mixed silently."""
    first = tables[0]
    for other in tables[1:]:
        if set(other.frame.columns) != set(first.frame.columns):
            extra = sorted(set(other.frame.columns) - set(first.frame.columns))[:5]
            lacking = sorted(set(first.frame.columns) - set(other.frame.columns))[:5]
            raise DataError(
                f"{other.source}: columns differ from {first.source} (extra {extra}, missing "
                f"{lacking}); load files of one CIC-IDS2017 layout at a time via data.files"
            )


def _load_file(path: Path, notes: list[str]) -> FlowTable:
    frame = read_table(path, format="csv", duplicate_columns="keep_first")
    notes.extend(frame.attrs.get("notes", []))
    frame.columns = [ALIASES.get(str(c).strip(), str(c).strip()) for c in frame.columns]
    if LABEL not in frame.columns:
        raise DataError(f"{path}: no 'Label' column; is this a CIC-IDS2017 flow CSV?")
    label = frame[LABEL].astype(str).str.strip()
    empty = frame[LABEL].isna() | (label == "")
    if empty.any():  # the original CSVs end some days with rows of empty cells
        notes.append(f"{path}: dropped {int(empty.sum())} row(s) without a Label")
        keep = ~empty.to_numpy()
        frame, label = frame[keep].reset_index(drop=True), label[keep].reset_index(drop=True)
    frame[LABEL] = label.to_numpy()
    time_col = TIME if TIME in frame.columns else None
    if time_col:
        frame[TIME] = to_seconds(frame[TIME], TIME, str(path))
    group_col = GROUP if GROUP in frame.columns else None
    if group_col:
        frame[GROUP] = frame[GROUP].fillna("").astype(str).str.strip()
    categorical = [c for c in CATEGORICAL if c in frame.columns]
    for col in categorical:
        frame[col] = frame[col].astype(str).str.strip().str.removesuffix(".0")
    numeric = [c for c in frame.columns if c not in {*NOT_FEATURES, *categorical, LABEL}]
    frame, repairs = coerce_numeric(frame, numeric, str(path))
    notes.extend(repairs)
    return FlowTable(
        frame=frame,
        numeric_cols=numeric,
        categorical_cols=categorical,
        label_col=LABEL,
        time_col=time_col,
        group_col=group_col,
        source=str(path),
        meta={"dataset": "cic_ids2017"},
    )


def _per_class_time_split(
    labels: np.ndarray, test_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (rows already in time order) of each class's oldest part and newest part."""
    train, test = [], []
    for name in np.unique(labels):
        rows = np.flatnonzero(labels == name)
        n_test = int(round(len(rows) * test_fraction))
        n_test = min(max(n_test, 1), len(rows) - 1) if len(rows) > 1 else 0
        train.append(rows[: len(rows) - n_test])
        test.append(rows[len(rows) - n_test :])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
