"""`data=flows`: any labelled flow table a user has: CSV/TSV/parquet, a Zeek conn.log, or the CSVs
of CICFlowMeter or NFStream.

Presets exist because identifiers must never be features: flow ids, IP addresses, source ports and
absolute timestamps name the capture's hosts and attack schedule, so a model would learn those
instead of traffic behaviour. Each tool spells them differently; a preset knows the spelling, the
time column (orders the windows) and the group column (the source host, whose flows a window
holds). Roles given in the config override the preset. Whatever is left is a feature: numeric when
every value parses as a number, categorical otherwise. Row ids (a column without a name too: the index
pandas' to_csv writes) and second label columns (e.g. UNSW's `attack_cat` beside `label`) are dropped in any
layout, since they give the answer away.

Split: with `test_path`, its files are the test sets (one per file). Otherwise the newest
`test_fraction` of the flows by time is the test set, so the model is scored on the future of what
it learnt from; `split=per_class_time` takes the newest `test_fraction` of each class's flows instead,
for files that sample each class apart (as this project's CIC-IDS2017 copy does), where one cut would
leave whole classes on one side. Without a time column the rows have no order, so the split is
stratified and seeded, `temporal` is False and a window can only be the flow itself. Validation is
carved from the training flows by the same rule. Under the binary task "class" in those cuts is the
file's own label (the attack type), kept beside benign/attack and never a feature.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from mstr.data.datasets import DatasetSplits, category_text, check_task, clean_category, make_table
from mstr.data.datasets.cic_ids2017 import ALIASES as CIC_ALIASES
from mstr.data.readers import coerce_numeric, read_table, resolve_paths
from mstr.data.splits import HOLDOUTS, STRATIFIED, TIME, hold_out
from mstr.data.table import FlowTable
from mstr.errors import ConfigError, DataError

FORMATS = ("csv", "tsv", "parquet", "zeek", "cicflowmeter", "nfstream")
PATTERNS = ("*.csv", "*.csv.gz", "*.tsv", "*.tsv.gz", "*.parquet", "*.pq", "*.log", "*.log.gz",
            "*.labeled")
DEFAULT_BENIGN = ("benign", "normal")  # compared case-insensitively
ID_COLUMNS = {"id", "uid", "flow id", "flow_id"}  # lower-case; row / flow identifiers in any layout
LABEL_LIKE = {"label", "class", "attack", "attack_cat", "detailed-label", "attempted category"}
HIGH_CARDINALITY = 1000  # distinct text values beyond which a "category" is an identifier
# Names (lower-case, letters and digits only) of host addresses and source ports: as features they
# identify this capture's hosts and connections, not their traffic (a destination port is a service).
ADDRESS_LIKE = {"src", "dst", "srcip", "dstip", "sip", "dip", "saddr", "daddr", "srcaddr", "dstaddr", "sourceip",
                "destinationip", "ipsrc", "ipdst", "idorigh", "idresph", "clientip", "serverip", "srcport",
                "sport", "sourceport", "idorigp", "clientport"}
# Names (as ADDRESS_LIKE) of absolute times: as features they tell when this capture's attacks happened.
TIME_LIKE = {"ts", "time", "timestamp", "datetime", "date", "stime", "ltime", "starttime", "endtime", "firstseen",
             "lastseen", "flowstart", "flowend"}
MOSTLY_NUMERIC = 0.99  # share of number cells that makes a column numeric with a few broken cells
UNNAMED = re.compile(r"Unnamed: \d+")  # pandas' name for a header's empty one (to_csv's row index, say)


@dataclass(frozen=True)
class Preset:
    label: tuple[str, ...] = ("label", "Label", "class", "Class")  # the first present is used
    time: Optional[str] = None
    group: Optional[str] = None
    categorical: tuple[str, ...] = ()  # categorical even where the values look numeric
    drop: tuple[str, ...] = ()  # never features; ignored where absent
    aliases: dict = field(default_factory=dict)


PRESETS = {
    "generic": Preset(),
    # Java CICFlowMeter / CIC-IDS2017-2018 CSVs (`Source IP` spellings aliased like data=cic_ids2017)
    # and the Python `cicflowmeter` (snake_case). `Dst Port` stays a feature, as in data=cic_ids2017,
    # so both configs give the same features.
    "cicflowmeter": Preset(
        label=("Label", "label"), time="Timestamp", group="Src IP", categorical=("Protocol",),
        drop=("Flow ID", "Src IP", "Dst IP", "Src Port", "Timestamp", "Attempted Category"),
        aliases={**CIC_ALIASES, "src_ip": "Src IP", "dst_ip": "Dst IP", "src_port": "Src Port",
                 "dst_port": "Dst Port", "timestamp": "Timestamp", "protocol": "Protocol"},
    ),
    # Zeek conn.log, labelled as in Stratosphere's CTU / IoT-23 logs (`label`, `detailed-label`).
    "zeek": Preset(
        label=("label", "detailed-label", "Label"), time="ts", group="id.orig_h",
        categorical=("proto", "service", "conn_state"),
        drop=("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "tunnel_parents"),
    ),
    # NFStream's `to_csv()`: absolute times, addresses, MACs and TLS/HTTP strings are identifiers.
    "nfstream": Preset(
        time="bidirectional_first_seen_ms", group="src_ip",
        categorical=("protocol", "application_name", "application_category_name"),
        drop=("expiration_id", "src_ip", "src_mac", "src_oui", "src_port", "dst_ip", "dst_mac",
              "dst_oui", "vlan_id", "tunnel_id", "bidirectional_first_seen_ms",
              "bidirectional_last_seen_ms", "src2dst_first_seen_ms", "src2dst_last_seen_ms",
              "dst2src_first_seen_ms", "dst2src_last_seen_ms", "requested_server_name",
              "client_fingerprint", "server_fingerprint", "user_agent", "content_type"),
    ),
}
_READER_FORMAT = {"csv": "csv", "tsv": "tsv", "parquet": "parquet", "zeek": "zeek"}


@dataclass
class Roles:
    """What each column is for, decided on the training files and imposed on the test files."""

    label: str
    numeric: list[str]
    categorical: list[str]
    time: Optional[str]
    group: Optional[str]


def check(path: Optional[str] = None, test_path: Optional[str] = None, format: Optional[str] = None,
          task: str = "binary", test_fraction: float = 0.3, split: Optional[str] = None, **_) -> None:
    """The settings that can be checked before any file is read (also by `mstr.preflight`, so that a bad
    one stops the command line before a run dir is made)."""
    # an empty path is the current folder to pathlib: every table in it would be read as flows
    if path is None or not str(path).strip():
        raise ConfigError(f"data.path is {'not set' if path is None else 'empty'}: give the training flows as a "
                          "file, folder or glob, e.g. data.path=captures/flows.csv")
    if test_path is not None and not str(test_path).strip():
        raise ConfigError("data.test_path is empty: give the test flows as a file, folder or glob, or "
                          "data.test_path=null to cut the test set from data.path")
    for key, value in (("data.path", path), ("data.test_path", test_path)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # a folder named 20240101
            raise ConfigError(f"{key}={value}: read as a number; quote a name of digits: '{key}=\"{value}\"'")
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{key}={value}: give one file, folder or glob (several files: a folder or a glob "
                              "such as 'captures/*.csv')")
    check_task(task)
    if format is not None and format not in FORMATS:
        raise ConfigError(f"data.format={format!r} is not one of {list(FORMATS)} (or null to infer)")
    if split is not None and split not in HOLDOUTS:
        raise ConfigError(f"data.split={split!r} is not one of {list(HOLDOUTS)} (or null: time when the flows "
                          "have timestamps, else stratified)")
    if test_path is None and not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction={test_fraction} must be between 0 and 1")


def load(
    path: Optional[str] = None,
    test_path: Optional[str] = None,
    format: Optional[str] = None,
    label_col: Optional[str] = None,
    time_col: Optional[str] = None,
    group_col: Optional[str] = None,
    categorical_cols: Optional[Sequence[str]] = None,
    drop_cols: Optional[Sequence[str]] = None,
    benign: Optional[str | Sequence[str]] = None,
    delimiter: Optional[str] = None,
    task: str = "binary",
    test_fraction: float = 0.3,
    split: Optional[str] = None,
    seed: int = 0,
    **_,
) -> DatasetSplits:
    """Train/test tables from the user's files (see the module doc)."""
    check(path, test_path, format, task, test_fraction, split)
    notes: list[str] = []
    paths = resolve_paths(path, PATTERNS)
    frame, preset_name, file_format = _read_files(paths, format, delimiter, notes)
    preset = PRESETS[preset_name]
    source = str(paths[0]) if len(paths) == 1 else f"{path} ({len(paths)} files)"
    roles = _roles(frame, preset, source, label_col, time_col, group_col, _names(categorical_cols),
                   _names(drop_cols), notes)
    benign_names = _names(benign) or list(DEFAULT_BENIGN)
    labels = _labels(frame, roles)
    spellings = _spellings(labels, source, notes)
    table = _table(frame, roles, task, benign_names, source, notes, _spelt(labels, spellings), require_benign=True)
    holdout = split or (TIME if roles.time is not None else STRATIFIED)
    if holdout != STRATIFIED and roles.time is None:
        raise ConfigError(f"data.split={holdout}: {source} has no time column to cut by; set data.time_col, "
                          "or data.split=stratified")
    table.read_as, table.file_format = preset_name, file_format  # what a detector must read (mstr.training.export)
    if test_path is not None:
        tests = {}
        for name, file in _test_names(resolve_paths(test_path, PATTERNS)).items():
            test_frame, _, _ = _read_files([file], format, delimiter, notes, preset_name)
            missing = [c for c in _needed(roles) if c not in test_frame.columns]
            if missing:
                raise DataError(f"{file}: missing column(s) {missing} that the training files have")
            tests[name] = _table(test_frame, roles, task, benign_names, str(file), notes,
                                 _spelt(_labels(test_frame, roles), spellings))
        train = table
    else:
        train, test = _split(table, holdout, test_fraction, seed, notes)
        tests = {"test": test}
    if holdout == STRATIFIED:
        notes.append(f"{source}: no time column, so rows have no order and a window can only be the flow itself "
                     "(data.window=1); set data.time_col if the flows have timestamps" if roles.time is None else
                     f"{source}: data.split=stratified cuts rows at random, so a window can only be the flow "
                     "itself (data.window=1)")
    return DatasetSplits(train=train, tests=tests, holdout=holdout, notes=notes)


# --------------------------------------------------------------------------- reading


def _read_files(paths: list[Path], fmt: Optional[str], delimiter: Optional[str], notes: list[str],
                preset_name: Optional[str] = None) -> tuple[pd.DataFrame, str, Optional[str]]:
    """All files as one frame (same columns required), the preset they were read with and the file
    format (csv, tsv, parquet, zeek) of the first. `fmt`: data.format; `preset_name`: the preset to read
    them with (test files: training's), else `fmt`'s, else the one their columns belong to. The files'
    own format is `fmt`'s where it names one, else each file's (a Zeek preset's test file may be a CSV).

    A repeated column name keeps its first copy (the original CIC CSVs repeat `Fwd Header Length`);
    the reader's note says so.
    """
    preset_name = preset_name or (None if fmt is None else fmt if fmt in PRESETS else "generic")
    frames = []
    for path in paths:
        frame = read_table(path, _READER_FORMAT.get(fmt or ""), delimiter=delimiter,
                           duplicate_columns="keep_first")
        notes.extend(frame.attrs.get("notes", []))
        frame.columns = [str(c).strip() for c in frame.columns]
        if preset_name is None:
            preset_name = _detect(frame.columns)
            notes.append(f"{path}: read as {preset_name} flows (set data.format to change)")
        if preset_name == "zeek":
            frame = _split_joined_columns(frame)
        aliases = PRESETS[preset_name].aliases
        frame.columns = [aliases.get(c, c) for c in frame.columns]
        if frames and set(frame.columns) != set(frames[0].columns):
            extra = sorted(set(frame.columns) - set(frames[0].columns))[:5]
            lacking = sorted(set(frames[0].columns) - set(frame.columns))[:5]
            raise DataError(f"{path}: columns differ from {paths[0]} (extra {extra}, missing "
                            f"{lacking}); give files of one layout in data.path")
        frames.append(frame)
    # indexed by (file, row): an error names the file and its own row (`mstr.data.readers.data_row`)
    return pd.concat(frames, keys=[str(p) for p in paths]), preset_name, frames[0].attrs.get("file_format")


def _detect(columns: Sequence[str]) -> str:
    """The preset a layout belongs to, from column names that only that tool writes."""
    cols = set(columns)
    if "id.orig_h" in cols or any(c.startswith("tunnel_parents ") for c in cols):
        return "zeek"
    if "bidirectional_first_seen_ms" in cols:
        return "nfstream"
    if cols & {"Flow Duration", "flow_duration", "Flow ID"}:
        return "cicflowmeter"
    return "generic"


def _split_joined_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """IoT-23's labelled logs join their last fields with spaces instead of tabs
    (`tunnel_parents   label   detailed-label`): split them back into columns."""
    for joined in [c for c in frame.columns if len(c.split()) > 1]:
        names = joined.split()
        parts = frame[joined].fillna("").astype(str).str.split(n=len(names) - 1, expand=True)
        parts = parts.reindex(columns=range(len(names)))
        frame = frame.drop(columns=joined)
        for i, name in enumerate(names):
            frame[name] = parts[i].astype(object).map(clean_category)
    return frame


# --------------------------------------------------------------------------- column roles


def _roles(frame: pd.DataFrame, preset: Preset, source: str, label_col, time_col, group_col,
           categorical: list[str], drop: list[str], notes: list[str]) -> Roles:
    cols = list(frame.columns)
    named = [("data.label_col", label_col), ("data.time_col", time_col), ("data.group_col", group_col),
             *(("data.categorical_cols", c) for c in categorical), *(("data.drop_cols", c) for c in drop)]
    for key, col in named:
        if col is not None and col not in cols:
            close = difflib.get_close_matches(col, cols, n=1, cutoff=0.6)
            hint = f"did you mean {key}={close[0]!r}? " if close else ""
            raise DataError(f"{source}: {key} names column {col!r}, which is not in the file; {hint}"
                            f"columns are {cols[:25]}{'...' if len(cols) > 25 else ''}")
    label = label_col or next((c for c in preset.label if c in cols), None)
    if label is None:
        raise DataError(f"{source}: no label column (looked for {list(preset.label)}); set "
                        f"data.label_col to the column holding each flow's class")
    time = time_col or (preset.time if preset.time in cols else None)
    group = group_col or (preset.group if preset.group in cols else None)
    _check_distinct_roles(source, [("data.label_col", label, label_col), ("data.time_col", time, time_col),
                                   ("data.group_col", group, group_col)])
    leaks = [c for c in cols if c != label and c.lower() in LABEL_LIKE]
    if leaks:
        notes.append(f"{source}: dropped {leaks}: label columns besides {label!r} give the answer away")
    idents = [c for c in cols if c.lower() in ID_COLUMNS]
    unnamed = [c for c in cols if UNNAMED.fullmatch(c)]
    if unnamed:
        notes.append(f"{source}: dropped column(s) {unnamed}: no name in the header, so no detector could find them "
                     "(e.g. the row index that pandas' to_csv writes without index=False)")
    dropped = {label, time, group, *preset.drop, *drop, *leaks, *idents, *unnamed}
    features = [c for c in cols if c not in dropped]
    forced = [c for c in (*preset.categorical, *categorical) if c in features]
    numeric, text, empty = [], [], []
    for col in features:
        if col in forced:
            continue
        try:
            coerced, _ = coerce_numeric(frame[[col]], [col], source)
            # a column with no value at all (Zeek's local_orig where no local networks are set) says
            # nothing, and every live flow would count it as a gap repaired
            (numeric if coerced[col].notna().any() else empty).append(col)
        except DataError:
            values = frame[col]
            if pd.to_numeric(values, errors="coerce").notna().sum() >= MOSTLY_NUMERIC * values.notna().sum():
                raise  # a few text cells in a column of numbers: a broken row, not a category
            comma = values.dropna().astype(str).str.fullmatch(r"\s*-?\d+,\d+\s*")
            if len(comma) and comma.mean() >= 0.5:  # a decimal comma: numbers one-hot encoded as texts
                example = values.dropna().astype(str)[comma].iloc[0]
                raise DataError(f"{source}: column {col!r} holds numbers written with a decimal comma "
                                f"({example!r}); mstr reads '.' decimals: save the file again with them, e.g. "
                                "pandas.read_csv(path, sep=';', decimal=',').to_csv(out, index=False)")
            text.append(col)
    if text:
        notes.append(f"{source}: non-numeric column(s) {text} are categorical")
    if empty:
        notes.append(f"{source}: dropped column(s) {empty}: no value in any row")
    addresses = [c for c in features if re.sub(r"[^a-z0-9]", "", c.lower()) in ADDRESS_LIKE]
    if addresses:
        notes.append(f"{source}: column(s) {addresses} look like host addresses or source ports, and are "
                     "features: a model that reads them learns this capture's hosts, not their traffic; drop "
                     f"them with data.drop_cols=[{','.join(addresses)}] (data.group_col may still name the host)")
    times = [c for c in features if re.sub(r"[^a-z0-9]", "", c.lower()) in TIME_LIKE]
    if times:
        notes.append(f"{source}: column(s) {times} look like absolute times, and are features: a model that reads "
                     "them learns when this capture's attacks happened, not their traffic; set "
                     f"data.time_col={times[0]} (the test split and the windows then follow it) or drop them with "
                     f"data.drop_cols=[{','.join(times)}]")
    roles = Roles(label, numeric, list(dict.fromkeys([*forced, *text])), time, group)
    if not roles.numeric and not roles.categorical:
        raise DataError(f"{source}: no feature columns left after dropping {sorted(dropped - {None})}")
    for col in roles.categorical:
        distinct = frame[col].nunique()
        if distinct > HIGH_CARDINALITY:
            notes.append(f"{source}: column {col!r} has {distinct:,} distinct values, like an "
                         f"address or id; a model may memorise it: consider data.drop_cols=[{col}]")
    return roles


def _labels(frame: pd.DataFrame, roles: Roles) -> pd.Series:
    labels = category_text(frame[roles.label])
    if roles.label == "detailed-label" and "label" in frame.columns:
        labels = labels.fillna(category_text(frame["label"]))  # CTU logs leave it "-" on benign flows
    return labels


def _spellings(labels: pd.Series, source: str, notes: list[str]) -> dict[str, str]:
    """One spelling per class whatever its case ('DoS', 'DOS'): the training files' most frequent, which
    test files' labels are read as too (the binary task's benign names match in any case alike)."""
    counts = labels.dropna().value_counts()
    chosen: dict[str, str] = {}
    for label in counts.index:  # most frequent first
        chosen.setdefault(label.lower(), label)
    merged = sorted(label for label in counts.index if chosen[label.lower()] != label)
    if merged:
        notes.append(f"{source}: label(s) {merged[:5]} read as {[chosen[m.lower()] for m in merged[:5]]}: one class "
                     "whatever the case")
    return chosen


def _check_distinct_roles(source: str, roles: list[tuple[str, Optional[str], Optional[str]]]) -> None:
    """One column, one role: a label that is also the time, or a host column read as time, would be
    read twice as two things. `roles`: (key, column, the value given for it, None where inferred)."""
    named = [(col, key if given is not None else f"{key} (the layout's default)") for key, col, given in roles]
    for i, (col, role) in enumerate(named):
        for other_col, other_role in named[i + 1:]:
            if col is not None and col == other_col:
                raise ConfigError(f"{source}: column {col!r} is both {role} and {other_role}; "
                                  "give each role a column of its own")


def _needed(roles: Roles) -> list[str]:
    return [roles.label, *roles.numeric, *roles.categorical, *filter(None, [roles.time, roles.group])]


def _spelt(labels: pd.Series, spellings: dict[str, str]) -> pd.Series:
    return labels.map(lambda v: v if pd.isna(v) else spellings.get(v.lower(), v))


def _table(frame: pd.DataFrame, roles: Roles, task: str, benign: list[str], source: str,
           notes: list[str], labels: pd.Series, require_benign: bool = False) -> FlowTable:
    """One FlowTable with the given roles (`_needed` columns present) and `labels` (`_labels`, spelt as
    training's), mapped for the task; values repaired."""
    needed = _needed(roles)
    frame = frame[needed].copy()
    for col in [*roles.categorical, *filter(None, [roles.group])]:
        frame[col] = category_text(frame[col]).fillna("").astype(str)
    wanted = {b.strip().lower() for b in benign}
    is_benign = labels.str.lower().isin(wanted).to_numpy()
    if require_benign and not is_benign.any():
        found = sorted(labels.dropna().unique().tolist())
        raise DataError(f"{source}: no flow is labelled benign ({sorted(wanted)}) in column "
                        f"{roles.label!r}; labels found are {found[:10]}: set data.benign to the "
                        "label(s) of normal traffic")
    benign_names = tuple(sorted(set(labels[is_benign].tolist()))) or tuple(benign)
    # the binary task keeps each flow's own label (the attack type) beside benign/attack, never as an
    # input: per-class and stratified cuts follow it, so a rare attack type is on every side, and the
    # test report singles out the attack types training never had
    kept = None
    if task == "binary":
        kept = "label_name"
        while kept in needed:
            kept = f"_{kept}"
    return make_table(frame, classes=labels, is_benign=is_benign, benign=benign_names, task=task,
                      numeric=roles.numeric, categorical=roles.categorical, source=source, notes=notes,
                      label_col=roles.label, time_col=roles.time, group_col=roles.group,
                      strata_col=kept, family_col=kept)


# --------------------------------------------------------------------------- splitting


def _split(table: FlowTable, holdout: str, test_fraction: float, seed: int,
           notes: list[str]) -> tuple[FlowTable, FlowTable]:
    """Newest `test_fraction` by time, of all flows or of each class's (the table is put in time order
    first); without time, a per-class seeded split."""
    n = len(table)
    if holdout != STRATIFIED:
        table = table.take(np.argsort(table.frame[table.time_col].to_numpy(), kind="stable"))
        how = (f"the newest {test_fraction:.0%} of flows by {table.time_col!r} are test" if holdout == TIME else
               f"the newest {test_fraction:.0%} of each class's flows by {table.time_col!r} are test")
    else:
        how = f"a stratified split (seed {seed}), {test_fraction:.0%} test"
    train, test = hold_out(table, test_fraction, holdout, seed, kept_source=f"{table.source} train",
                           held_source=f"{table.source} test")
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{table.source}: {n} labelled row(s) are too few for a train/test split")
    notes.append(f"{table.source}: {how} ({len(train):,} train / {len(test):,} test rows)")
    only_test = sorted(set(test.labels) - set(train.labels))
    if only_test:
        # binary labels included ('attack': no attack before the cut), where data.task=binary cannot help
        notes.append(f"{table.source}: class(es) {only_test} occur only in the test split (after the "
                     "time cut); cut each class by time with data.split=per_class_time, or give test files "
                     "with data.test_path")
    return train, test


def _names(value) -> list[str]:
    """A config value that may be one name or a list of names (Hydra passes ListConfig)."""
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [str(value)]
    return [str(v) for v in value]


def _test_names(files: list[Path]) -> dict[str, Path]:
    """Each test file by its name: the file's stem, or where files in several folders share one (IoT-23
    names every scenario's log `conn.log.labeled`), the stem after as many of its folders as tell them
    apart, joined by "_" (`CTU-IoT-Malware-Capture-1-1_bro_conn`)."""
    names = {}
    for file in files:
        shared = [other for other in files if _stem(other) == _stem(file)]
        depth = next((d for d in range(len(file.parent.parts) + 1)
                      if len({_tail(other, d) for other in shared}) == len(shared)), None)
        if depth is None:  # the same stem in one folder: conn.csv beside conn.csv.gz
            raise DataError(f"{file}: two test files are named {_stem(file)!r}; rename one of them")
        names[_tail(file, depth)] = file
    return names


def _tail(path: Path, depth: int) -> str:
    """The stem of `path` after its last `depth` folders, joined by "_"."""
    folders = path.parent.parts[len(path.parent.parts) - depth:]
    return "_".join([*folders, _stem(path)])


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".labeled", ".csv", ".tsv", ".parquet", ".pq", ".log"):
        name = name.removesuffix(suffix)
    return name
