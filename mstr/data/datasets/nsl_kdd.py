"""NSL-KDD (Tavallaee et al., 2009): the official KDDTrain+ / KDDTest+ split, no timestamps.

Files are header-less CSVs of 41 features, the attack name and a `difficulty` score; the score is
dropped because it was computed from classifier outcomes on the test set (a label leak).
Multiclass maps the attack names to the four usual categories, including the 17 attack types that
only occur in the test files: a test-only name is exactly what NSL-KDD is meant to probe, so it
must map, while a name that is in no list means a wrong or corrupted file and is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from mstr.data.datasets import DatasetSplits, check_task, dataset_folder, make_table
from mstr.data.readers import read_table
from mstr.data.table import FlowTable
from mstr.errors import ConfigError, DataError

FEATURES = (
    "duration protocol_type service flag src_bytes dst_bytes land wrong_fragment urgent hot "
    "num_failed_logins logged_in num_compromised root_shell su_attempted num_root "
    "num_file_creations num_shells num_access_files num_outbound_cmds is_host_login "
    "is_guest_login count srv_count serror_rate srv_serror_rate rerror_rate srv_rerror_rate "
    "same_srv_rate diff_srv_rate srv_diff_host_rate dst_host_count dst_host_srv_count "
    "dst_host_same_srv_rate dst_host_diff_srv_rate dst_host_same_src_port_rate "
    "dst_host_srv_diff_host_rate dst_host_serror_rate dst_host_srv_serror_rate "
    "dst_host_rerror_rate dst_host_srv_rerror_rate"
).split()
CATEGORICAL = ["protocol_type", "service", "flag"]
NUMERIC = [c for c in FEATURES if c not in CATEGORICAL]

_CATEGORIES = {
    "DoS": "back land neptune pod smurf teardrop apache2 mailbomb processtable udpstorm",
    "Probe": "ipsweep nmap portsweep satan mscan saint",
    "R2L": "ftp_write guess_passwd imap multihop phf spy warezclient warezmaster httptunnel "
    "named sendmail snmpgetattack snmpguess worm xlock xsnoop",
    "U2R": "buffer_overflow loadmodule perl rootkit ps sqlattack xterm",
}
CATEGORY = {"normal": "normal"} | {
    name: cat for cat, names in _CATEGORIES.items() for name in names.split()
}
TRAIN_FILES = {"full": "KDDTrain+", "20percent": "KDDTrain+_20Percent"}


def check(data_dir: str | Path, task: str = "binary", variant: str = "full",
          test_files: Optional[Sequence[str]] = None, **_) -> Path:
    """The settings that can be checked before any file is read (also by `mstr.preflight`); the folder."""
    check_task(task)
    if variant not in TRAIN_FILES:
        raise ConfigError(f"data.variant={variant!r} is not one of {list(TRAIN_FILES)}")
    if test_files is not None and not isinstance(test_files, str) and len(test_files) == 0:
        raise ConfigError("data.test_files=[]: name at least one test file, or leave the key out (KDDTest+)")
    return dataset_folder(data_dir, "nsl_kdd", "nsl_kdd")


def load(
    data_dir: str | Path,
    task: str = "binary",
    variant: str = "full",
    test_files: Optional[Sequence[str]] = None,
    **_,
) -> DatasetSplits:
    """Train on KDDTrain+ (or its 20% subset); one test table per entry of `test_files`.

    A `test_files` entry is a name looked up in data_dir/nsl_kdd (with .txt or .txt.gz) or a path
    to a file of the same format, e.g. a user's own KDDTest-21.txt.
    """
    folder = check(data_dir, task, variant, test_files)
    notes: list[str] = []
    train = _load_file(find_file(folder, TRAIN_FILES[variant]), task, notes)
    tests = {}
    for entry in [test_files] if isinstance(test_files, str) else test_files or ["KDDTest+"]:
        path = find_file(folder, entry)
        name = _stem(path)
        if name in tests:  # its metrics would be one name: test_<name>/...
            raise DataError(f"{path}: data.test_files names two files {name!r}; give each file once, or "
                            "rename one of them")
        tests[name] = _load_file(path, task, notes)
    return DatasetSplits(train=train, tests=tests, notes=notes)


def find_file(folder: Path, entry: str) -> Path:
    """An NSL-KDD file by its name (with or without .txt / .txt.gz) in `folder`, or a path as given."""
    given = Path(str(entry)).expanduser()
    if given.is_absolute() or given.parent != Path(".") or given.exists():
        if not given.exists():
            raise DataError(f"{given}: NSL-KDD file not found; check data.test_files")
        return given
    for suffix in (".txt", ".txt.gz", "", ".gz"):
        path = folder / f"{entry}{suffix}"
        if path.is_file():
            return path
    for suffix in (".txt", ".txt.gz"):
        if (folder / f"{entry}{suffix}").is_dir():
            raise DataError(f"{folder / entry}{suffix}: is a folder, not the NSL-KDD file; put the file itself there")
    raise DataError(
        f"{folder / entry}.txt(.gz): NSL-KDD file not found; put {entry}.txt or {entry}.txt.gz "
        f"in {folder} or give an absolute path"
    )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".txt", ".csv"):
        name = name.removesuffix(suffix)
    return name


def _load_file(path: Path, task: str, notes: list[str]) -> FlowTable:
    frame = read_table(path, format="csv", header=False)
    if str(frame.iloc[0, 0]).strip() == "duration":  # a copy that carries a header row
        frame = read_table(path, format="csv", header=True)
        frame.columns = range(frame.shape[1])
    if frame.shape[1] not in (42, 43):
        raise DataError(
            f"{path}: {frame.shape[1]} columns, expected 43 (41 features, label, difficulty) "
            "or 42 (without difficulty); is this an NSL-KDD file?"
        )
    short = frame.iloc[:, 41].isna().to_numpy()  # the reader pads a row of too few fields with empty cells
    if short.any():
        row = int(short.argmax())
        raise DataError(f"{path}: data row {row + 1} has too few fields (no label in field 42; expected 42 "
                        "or 43: 41 features, label, difficulty); fix or remove that row")
    frame = frame.iloc[:, :42]
    frame.columns = [*FEATURES, "attack"]
    attack = frame.pop("attack").astype(str).str.strip().str.rstrip(".").str.lower()
    unknown = sorted(set(attack.unique()) - set(CATEGORY))
    if unknown:
        row = int((~attack.isin(list(CATEGORY))).to_numpy().argmax())
        raise DataError(
            f"{path}: unknown attack name(s) {unknown[:5]} (first at data row {row + 1}) in "
            "column 42; expected NSL-KDD labels such as 'normal' or 'neptune'"
        )
    frame["attack_type"] = attack  # which attack: for the unseen-attack report, never an input
    return make_table(frame, classes=attack.map(CATEGORY), is_benign=(attack == "normal").to_numpy(),
                      benign=("normal",), task=task, numeric=NUMERIC, categorical=CATEGORICAL,
                      source=str(path), notes=notes, family_col="attack_type")
