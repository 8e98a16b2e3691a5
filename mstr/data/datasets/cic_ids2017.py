"""CIC-IDS2017 flows: the CNS2022 corrected re-extraction, or the original CIC CSVs.

Both layouts are accepted. The original MachineLearningCVE / TrafficLabelling CSVs put a leading
space on most column names, call the endpoints `Source IP` / `Destination Port`, repeat
`Fwd Header Length` and hold `Infinity`/`NaN`; names are stripped and aliased to the corrected
layout, the repeated column is dropped, and non-finite values are left to the preprocessing to fill.

Identifiers (`id`, `Flow ID`, IPs, `Src Port`, `Timestamp`, `Attempted Category`) are not
features: they identify the testbed hosts and the attack schedule, so a model would learn those.
`Timestamp` is kept as the time column (float seconds) and `Src IP` as the group column.

The split is a per-class time split (`mstr.data.splits.PER_CLASS_TIME`): for each class, its oldest
(1 - test_fraction) flows train and its newest flows test; validation is carved from train the same way. A single global time cut does not work on this data: the shared copy
is a per-class random sample, and most attack classes live in one short window (DDoS only on
Friday afternoon, the web attacks on one Thursday morning), so a global cut would put whole
classes only in train or only in test. The per-class cut still keeps every test flow of a class
later than all of that class's training flows. Files without a Timestamp column (the original
MachineLearningCVE CSVs) are cut in file order instead, which is capture order there. In the binary
task each flow's CIC class stays in the `Class` column (never a feature), so the cuts still go by it.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mstr.data.datasets import DatasetSplits, category_text, check_task, dataset_folder, make_table
from mstr.data.readers import read_table, resolve_paths
from mstr.data.splits import PER_CLASS_TIME, hold_out
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
LABEL, TIME, GROUP, CLASS = "Label", "Timestamp", "Src IP", "Class"


def check(data_dir: str | Path, task: str = "binary", files=None, test_fraction: float = 0.3, **_) -> Path:
    """The settings that can be checked before any file is read (also by `mstr.preflight`); the folder
    (which must exist only when `files` does not name the files)."""
    check_task(task)
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction={test_fraction} must be between 0 and 1")
    if files is None:
        return dataset_folder(data_dir, "cic_ids2017_improved", "cic_ids2017")
    return Path(data_dir).expanduser() / "cic_ids2017_improved"


def load(
    data_dir: str | Path,
    task: str = "binary",
    files: Optional[str | Sequence[str]] = None,
    test_fraction: float = 0.3,
    **_,
) -> DatasetSplits:
    """All CSVs in data_dir/cic_ids2017_improved (or `files`: paths, folders or globs)."""
    folder = check(data_dir, task, files, test_fraction)
    entries = [folder] if files is None else [files] if isinstance(files, str) else list(files)
    paths = sorted({p for entry in entries for p in resolve_paths(_under(folder, entry), PATTERNS)})
    notes: list[str] = []
    tables = [_load_file(p, task, notes) for p in paths]
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
    train, test = hold_out(table, test_fraction, PER_CLASS_TIME, kept_source=f"{table.source} train",
                           held_source=f"{table.source} test")
    notes.append(
        f"CIC-IDS2017: per-class time split, the newest {test_fraction:.0%} of each class's "
        f"flows are test ({len(train):,} train / {len(test):,} test rows); a single time cut "
        "would leave classes that occur in one short time span entirely on one side"
    )
    return DatasetSplits(train=train, tests={"test": test}, holdout=PER_CLASS_TIME, notes=notes)


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


def _load_file(path: Path, task: str, notes: list[str]) -> FlowTable:
    frame = read_table(path, format="csv", duplicate_columns="keep_first")
    notes.extend(frame.attrs.get("notes", []))
    frame.columns = [ALIASES.get(str(c).strip(), str(c).strip()) for c in frame.columns]
    if LABEL not in frame.columns:
        raise DataError(f"{path}: no 'Label' column; is this a CIC-IDS2017 flow CSV?")
    # the original CSVs end some days with rows of empty cells: no label, dropped
    raw = frame.pop(LABEL)
    label = raw.astype(str).str.strip()
    label = label.where(raw.notna() & (label != ""))
    categorical = [c for c in CATEGORICAL if c in frame.columns]
    for col in categorical:
        # as flow logs are read and `mstr.detect` reads a line: missing tokens ("NaN", "-", ...) are "", so a
        # live flow lands in the category its training rows had
        frame[col] = category_text(frame[col]).fillna("").astype(str)
    numeric = [c for c in frame.columns if c not in {*NOT_FEATURES, *categorical}]
    return make_table(frame, classes=label, is_benign=label.isin(["BENIGN"]).to_numpy(), benign=("BENIGN",),
                      task=task, numeric=numeric, categorical=categorical, source=str(path), notes=notes,
                      label_col=LABEL, time_col=TIME if TIME in frame.columns else None,
                      group_col=GROUP if GROUP in frame.columns else None, strata_col=CLASS)
