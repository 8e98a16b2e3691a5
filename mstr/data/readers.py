"""Readers for the on-disk formats flow data comes in, each returning a pandas DataFrame.

Files come from the internet and from users' own captures, so a reader assumes nothing: before
pandas sees a text file it is streamed once (`_scan`) to catch what would otherwise surface as a
pandas traceback, a silent mis-parse or memory exhaustion: a truncated gzip, NUL bytes (a binary or
UTF-16 file), a "line" of hundreds of MB, an empty file. Every problem becomes a one-line
`DataError` that names the file and says what to do.

Formats: `csv`, `tsv`, `parquet`, `zeek` (a Zeek/Bro TSV log such as conn.log), each optionally
gzip-compressed (detected from the magic bytes, not trusted from the name).
"""

from __future__ import annotations

import codecs
import csv
import glob
import gzip
import io
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from mstr.deploy.features import MISSING_NUMBER
from mstr.errors import DataError

log = logging.getLogger(__name__)

FORMATS = ("csv", "tsv", "parquet", "zeek")
MAX_LINE_BYTES = 1 << 20  # 1 MiB: no flow record is anywhere near this long
CLIP = 1e12  # larger magnitudes are counter garbage and wreck float32 standardisation
_CANDIDATE_DELIMITERS = (";", "\t", "|", ",")
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
_CHUNK = 1 << 20
# Archives and compressions other than gzip, by their first bytes: what they are and how to unpack them.
_PACKED = {b"PK\x03\x04": ("a zip archive", "unzip"), b"\xfd7zXZ\x00": ("xz-compressed", "xz -d"),
           b"BZh": ("bzip2-compressed", "bunzip2"), b"\x28\xb5\x2f\xfd": ("zstd-compressed", "zstd -d"),
           b"7z\xbc\xaf\x27\x1c": ("a 7-Zip archive", "7z x")}
# Packet captures (pcap either byte order, microsecond or nanosecond; pcapng): packets, not flows.
_CAPTURES = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
             b"\x0a\x0d\x0d\x0a")
_HEAD_BYTES = 1 << 16


# --------------------------------------------------------------------------- paths


def resolve_paths(
    path_or_glob_or_dir: str | os.PathLike, patterns: Sequence[str] = ("*.csv", "*.csv.gz")
) -> list[Path]:
    """Expand a file, a folder (files in it matching `patterns`) or a glob into sorted files.

    Sorting makes the row order, and so every seeded split downstream, independent of the file
    system's listing order.
    """
    text = os.fspath(path_or_glob_or_dir)
    path = Path(text).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = {p for pat in patterns for p in path.glob(pat) if p.is_file()}
        if not found:
            raise DataError(
                f"{path}: folder holds no file matching {list(patterns)}; "
                "name the folder that holds the data files"
            )
        return sorted(found)
    if glob.has_magic(text):
        found = {Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)}
        found = {p for p in found if p.is_file()}
        if not found:
            raise DataError(f"{text}: the pattern matches no file; check the path and the glob")
        return sorted(found)
    raise DataError(f"{path}: no such file or folder; check the path" + _relative_hint(path))


# --------------------------------------------------------------------------- raw scan


@dataclass
class _Scan:
    gz: bool
    head: bytes  # the first decompressed bytes, BOM removed
    n_bytes: int
    encoding: str  # utf-8-sig, or cp1252 when the bytes are not valid UTF-8

    def first_lines(self, n: int = 5) -> list[str]:
        text = self.head.decode(self.encoding.replace("-sig", ""), errors="replace")
        return [ln.rstrip("\r") for ln in text.split("\n")[:n]]


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_binary(path: Path, gz: bool):
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _relative_hint(path: Path) -> str:
    return "" if path.is_absolute() else f" (relative to {Path.cwd()}, where the command runs)"


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a file; name a file inside it")
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path" + _relative_hint(path))
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: not readable (permissions)")


def _scan(path: Path, max_line_bytes: int) -> _Scan:
    """Stream the file once, holding one chunk at a time: gzip integrity, NULs, line lengths."""
    _check_file(path)
    with open(path, "rb") as fh:
        magic = fh.read(6)
    for start, (what, unpack) in _PACKED.items():
        if magic.startswith(start):
            raise DataError(f"{path}: {what}; mstr reads tables as they are or gzip-compressed: {unpack} it first")
    if magic.startswith(_CAPTURES):
        raise DataError(f"{path}: a packet capture, not a table of flows; turn it into NFStream flows first "
                        "(README \"Pcaps\"), label them, and train with data.format=nfstream")
    gz = _is_gzip(path)
    head = bytearray()
    n_bytes = 0
    line_no = 1  # 1-based number of the line the next byte belongs to
    cur_len = 0  # bytes of that line seen so far
    utf8 = codecs.getincrementaldecoder("utf-8")()
    encoding = "utf-8-sig"
    try:
        with _open_binary(path, gz) as fh:
            while chunk := fh.read(_CHUNK):
                if len(head) < _HEAD_BYTES:
                    head += chunk[: _HEAD_BYTES - len(head)]
                nul = chunk.find(b"\x00")
                if nul >= 0:
                    line = line_no + chunk.count(b"\n", 0, nul)
                    raise DataError(
                        f"{path}: NUL byte at line {line} (byte {n_bytes + nul}): this is binary "
                        "data or UTF-16 text, not a UTF-8 table; re-export it as UTF-8 CSV"
                    )
                if encoding == "utf-8-sig":
                    try:
                        utf8.decode(chunk)
                    except UnicodeDecodeError:
                        encoding = "cp1252"  # old Windows exports, e.g. the original CIC CSVs
                nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
                if nl.size == 0:
                    lengths, starts = np.array([cur_len + len(chunk)]), [0]
                else:
                    ends = np.concatenate(([-1], nl))
                    lengths = np.diff(ends) - 1
                    lengths[0] += cur_len  # the first segment continues the carried line
                    lengths = np.append(lengths, len(chunk) - nl[-1] - 1)
                    starts = range(len(lengths))
                worst = int(np.argmax(lengths))
                if lengths[worst] > max_line_bytes:
                    raise DataError(
                        f"{path}: line {line_no + starts[worst]} is longer than "
                        f"{max_line_bytes:,} bytes; the file is not a table of flow records "
                        "(wrong file, or binary data)"
                    )
                line_no += int(nl.size)
                cur_len = int(lengths[-1])
                n_bytes += len(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(
            f"{path}: truncated or corrupt gzip data ({err}); download or compress it again"
        ) from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    head = bytes(head)
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    if not head.strip():
        raise DataError(f"{path}: the file is empty; expected flow records in it")
    control = np.frombuffer(head, dtype=np.uint8)
    control = ((control < 32) & ~np.isin(control, (9, 10, 12, 13))) | (control == 127)
    if control.mean() > 0.01:  # text tables have none; compressed/binary data has ~10 %
        raise DataError(
            f"{path}: {control.mean():.0%} of the first {len(head):,} bytes are control "
            "characters: this is binary data (or an unrecognised compression), not a text table"
        )
    return _Scan(gz=gz, head=head, n_bytes=n_bytes, encoding=encoding)


# --------------------------------------------------------------------------- formats


def infer_format(path: str | os.PathLike, head: Optional[bytes] = None) -> str:
    """The format from the name (.csv/.tsv/.parquet/.log, optionally .gz), else the content."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if head is not None and head.startswith((b"#separator", b"#fields")):
        return "zeek"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".tsv"):
        return "tsv"
    if name.endswith(".log"):
        return "zeek"
    if head is not None and head.startswith(b"PAR1"):
        return "parquet"
    return "csv"


def read_table(
    path: str | os.PathLike,
    format: Optional[str] = None,
    *,
    header: bool = True,
    delimiter: Optional[str] = None,
    duplicate_columns: str = "error",
    max_line_bytes: int = MAX_LINE_BYTES,
) -> pd.DataFrame:
    """Read one file into a DataFrame, inferring the format from its name/content unless given.

    header: False for header-less files (NSL-KDD); columns are then numbered 0..n-1.
    delimiter: overrides the format's (csv ',', tsv tab) — the `data.delimiter` key.
    duplicate_columns: "error", or "keep_first" to drop later copies (the original CIC-IDS2017
        CSVs repeat `Fwd Header Length`); dropped names are listed in `frame.attrs["notes"]`.
    All cells of text formats come back as read: numbers as numbers where a column is clean, text
    otherwise (use `coerce_numeric`); only empty cells are missing, so a category named "NA" stays.
    """
    path = Path(path).expanduser()
    _check_file(path)
    fmt = (format or "").lower() or None
    if fmt not in (None, *FORMATS):
        raise DataError(f"{path}: unknown data.format '{format}'; use one of {list(FORMATS)}")
    if fmt == "parquet" or (fmt is None and _looks_parquet(path)):
        frame, fmt = _read_parquet(path), "parquet"
    else:
        scan = _scan(path, max_line_bytes)
        if scan.encoding == "cp1252":
            log.warning("%s: not UTF-8 text: read as Windows-1252; if names or categories look wrong, save it "
                        "again as UTF-8", path)
        fmt = fmt or infer_format(path, scan.head)
        if fmt == "zeek":
            frame = _read_zeek(path, scan)
        else:
            sep = typed_delimiter(delimiter) or ("\t" if fmt == "tsv" else ",")
            frame = _read_delimited(path, scan, fmt, sep, header, duplicate_columns)
    frame.attrs["file_format"] = fmt  # what a detector of this data must read (mstr.training.export)
    return frame


def typed_delimiter(value: Optional[str]) -> Optional[str]:
    """A `data.delimiter` as typed on a command line: "\\t" (a backslash and a t; Hydra passes no escapes)
    is a tab."""
    return "\t" if value == "\\t" else value


def _looks_parquet(path: Path) -> bool:
    if infer_format(path) == "parquet":
        return True
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _pandas_error(path: Path, err: Exception) -> DataError:
    msg = " ".join(str(err).split())
    return DataError(f"{path}: cannot parse ({msg}); check the delimiter and quoting on that line")


def _check_delimiter(path: Path, scan: _Scan, fmt: str, sep: str) -> None:
    """A file split on the wrong delimiter parses "fine" into one column: refuse that."""
    first = scan.first_lines(1)[0]
    if sep in first:
        return
    for cand in _CANDIDATE_DELIMITERS:
        if cand != sep and first.count(cand) >= 1:
            # the delimiter alone, as a shell passes it to Hydra (a tab as "\t": `typed_delimiter`):
            # data.format=csv or tsv would also drop a preset's column roles (CICFlowMeter's) for the generic ones
            typed = "\\t" if cand == "\t" else cand
            raise DataError(
                f"{path}: read as {fmt} with delimiter {_DELIMITER_NAMES.get(sep, repr(sep))} this "
                f"gives a single column, but the first line is {_DELIMITER_NAMES[cand]}-separated; "
                f"set 'data.delimiter=\"{typed}\"'"
            )


def _header_names(scan: _Scan, sep: str) -> list[str]:
    return next(csv.reader([scan.first_lines(1)[0]], delimiter=sep), [])


def _duplicates(names: Iterable[str]) -> list[str]:
    seen, dups = set(), []
    for name in (str(n).strip() for n in names):
        if name in seen and name not in dups:
            dups.append(name)
        seen.add(name)
    return dups


def _drop_copies(path: Path, frame: pd.DataFrame, copies: dict[str, str], notes: list[str]) -> pd.DataFrame:
    """Keep the first of each repeated column. A copy equal to the first goes quietly (the original
    CIC-IDS2017 CSVs repeat `Fwd Header Length`); one that differs is a warning, since its values are lost."""
    same, differ = [], []
    for copy, first in copies.items():
        a, b = frame[first].astype(str), frame[copy].astype(str)
        rows = int((a != b).sum())
        (differ if rows else same).append((first, rows))
    if same:
        notes.append(f"{path}: dropped repeated column(s) {sorted({n for n, _ in same})}, "
                     "copies of the first of each")
    for first, rows in differ:
        log.warning("%s: column %r is repeated and its later copy differs from the first in %d row(s); "
                    "only the first is read: rename the copy if both are wanted", path, first, rows)
    return frame.drop(columns=list(copies))


def _read_delimited(
    path: Path, scan: _Scan, fmt: str, sep: str, header: bool, duplicate_columns: str
) -> pd.DataFrame:
    _check_delimiter(path, scan, fmt, sep)
    kwargs: dict = {}
    notes: list[str] = []
    copies: dict[str, str] = {}  # a later copy's read name -> the first copy's name
    if header:
        names = _header_names(scan, sep)
        dups = _duplicates(names)
        if dups and duplicate_columns != "keep_first":
            raise DataError(
                f"{path}: duplicate column name(s) {dups} in the header; rename or remove them"
            )
        if dups:
            seen, unique = set(), []
            for i, name in enumerate(names):
                key = name.strip()
                unique.append(name if key not in seen else f"{name}__dup{i}")
                if key in seen:
                    copies[unique[-1]] = next(n for n in names if n.strip() == key)
                seen.add(key)
            kwargs.update(names=unique)
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=0 if header else None,
            index_col=False,
            compression="gzip" if scan.gz else None,
            encoding=scan.encoding,
            encoding_errors="replace",
            keep_default_na=False,
            na_values=[""],
            low_memory=False,
            **kwargs,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected flow records in it") from None
    except (pd.errors.ParserError, ValueError) as err:
        raise _pandas_error(path, err) from None
    if frame.empty:
        raise DataError(f"{path}: has a header but no data rows")
    if header:
        _refuse_short_rows(path, scan, sep, len(names), quoted=True)
        frame = _drop_repeated_headers(path, frame, names, notes)
    if copies:
        frame = _drop_copies(path, frame, copies, notes)
    frame.attrs["notes"] = notes
    return frame


def _drop_repeated_headers(path: Path, frame: pd.DataFrame, names: list[str], notes: list[str]) -> pd.DataFrame:
    """Rows that repeat the header (files joined with `cat`, CSE-CIC-IDS2018's day files) are dropped with a
    note, as the detector drops them, rather than read as a row whose every number is a name. The rows
    keep their numbers, so that errors still name the file's own rows."""
    first = frame.iloc[:, 0]
    if pd.api.types.is_numeric_dtype(first):  # a header's name in the column would have made it text
        return frame
    candidates = first.astype(str).str.strip() == names[0].strip()
    if not candidates.any():
        return frame
    repeated = frame[candidates].astype(str).apply(lambda col: col.str.strip()).eq(
        [name.strip() for name in names]).all(axis=1)
    if repeated.any():
        notes.append(f"{path}: dropped {int(repeated.sum())} line(s) that repeat the header (data row "
                     f"{int(repeated.index[repeated][0]) + 1} first)")
        frame = frame.drop(index=repeated.index[repeated])
    return frame


def _refuse_short_rows(path: Path, scan: _Scan, sep: str, n_fields: int, quoted: bool, comment: str = "") -> None:
    """A row with fewer fields than the header (a file cut off mid-row, a broken line) is read by pandas
    with the missing cells empty: a label cut to "BENI" would become a class of its own, and the cells
    would be filled with medians. Refused, naming the row. Lines with quotes, and those inside a quoted
    cell that spans lines (whose separators may be the cell's), are left to the parser."""
    separator, comment_prefix = sep.encode(), comment.encode()
    row = 0
    in_cell = False  # inside a quoted cell that a line break split
    with _open_binary(path, scan.gz) as fh:
        next(fh, None)  # the header
        for line in fh:
            line = line.rstrip(b"\r\n")
            if quoted and (in_cell or b'"' in line):
                in_cell ^= line.count(b'"') % 2 == 1
                row += not in_cell and bool(line.strip())
                continue
            if not line.strip() or (comment_prefix and line.startswith(comment_prefix)):
                continue
            row += 1
            fields = line.count(separator) + 1
            if fields < n_fields:
                raise DataError(f"{path}: data row {row} has {fields} fields where the header has {n_fields} "
                                "(a truncated file, or a broken line); fix or remove that row")


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        if _is_gzip(path):
            with gzip.open(path, "rb") as fh:
                frame = pd.read_parquet(io.BytesIO(fh.read()))
        else:
            frame = pd.read_parquet(path)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: truncated or corrupt gzip data ({err})") from None
    except Exception as err:  # pyarrow raises many types for a bad file
        kind = type(err).__name__
        raise DataError(f"{path}: not a readable parquet file ({kind}: {err})") from None
    dups = _duplicates(frame.columns)
    if dups:
        raise DataError(f"{path}: duplicate column name(s) {dups}; rename or remove them")
    if frame.empty:
        raise DataError(f"{path}: the parquet file has no rows")
    frame.attrs["notes"] = []
    return frame


# Zeek types whose values are numbers; the rest (addr, string, enum, set[...]) stay text.
_ZEEK_NUMERIC = ("time", "interval", "double", "count", "int", "port")


def _read_zeek(path: Path, scan: _Scan) -> pd.DataFrame:
    """A Zeek TSV log: `#separator`, `#fields`, `#types` headers; `-` unset, `(empty)` empty."""
    meta: dict[str, str] = {}
    n_header = 0
    sep = "\t"
    for line in scan.first_lines(64):
        if not line.startswith("#"):
            break
        n_header += 1
        if line.startswith("#separator"):
            raw = line[len("#separator") :].strip() or "\\x09"
            sep = raw.encode().decode("unicode_escape")
            continue
        key, _, value = line[1:].partition(sep)
        meta[key] = value
    if "fields" not in meta:
        raise DataError(f"{path}: Zeek log without a '#fields' header line; is it a conn.log?")
    fields = meta["fields"].split(sep)
    missing_tokens = [meta.get("unset_field", "-"), meta.get("empty_field", "(empty)"), ""]
    types = meta.get("types", "").split(sep)
    dups = _duplicates(fields)
    if dups:
        raise DataError(f"{path}: duplicate column name(s) {dups} in '#fields'")
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=None,
            names=fields,
            skiprows=n_header,
            index_col=False,
            dtype=str,
            compression="gzip" if scan.gz else None,
            encoding=scan.encoding,
            encoding_errors="replace",
            keep_default_na=False,
            na_values=missing_tokens,
            quoting=csv.QUOTE_NONE,
            low_memory=False,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: Zeek log has headers but no records") from None
    except (pd.errors.ParserError, ValueError) as err:
        raise _pandas_error(path, err) from None
    first = frame[fields[0]].astype(str)
    frame = frame[~first.str.startswith("#")].reset_index(drop=True)  # e.g. the '#close' trailer
    _refuse_short_rows(path, scan, sep, len(fields), quoted=False, comment="#")
    if frame.empty:
        raise DataError(f"{path}: Zeek log has headers but no records")
    for name, typ in zip(fields, types):
        if typ in _ZEEK_NUMERIC:
            converted = pd.to_numeric(frame[name], errors="coerce")
            if converted.notna().sum() == frame[name].notna().sum():
                frame[name] = converted  # otherwise leave the text for coerce_numeric to report
    frame.attrs["notes"] = []
    return frame


# --------------------------------------------------------------------------- numeric repair


def coerce_numeric(
    frame: pd.DataFrame, cols: Sequence[str], source: str
) -> tuple[pd.DataFrame, list[str]]:
    """Make `cols` float64: refuse text, count NaN/inf, clip absurd magnitudes.

    Text that is not a number is a wrong column or a shifted row, so it is an error (naming the
    first bad 1-based data row). Missing and infinite values are common in flow exports (e.g.
    CICFlowMeter's Flow Bytes/s for zero-duration flows): they stay as they are and are counted; the
    preprocessing fills them with the column's training median (`FlowPreprocessor`), so every split
    and new data are filled alike. Finite |x| > 1e12 is clipped to +-1e12.
    Returns the new frame and log lines for the user.
    """
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing numeric column(s) {missing}")
    frame = frame.copy()
    n_nan = n_inf = n_clip = 0
    gaps: list[str] = []
    clipped: list[str] = []
    for col in cols:
        values = _to_float(frame[col], col, source)
        nan, inf = np.isnan(values), np.isinf(values)
        if nan.any() or inf.any():
            n_nan, n_inf = n_nan + int(nan.sum()), n_inf + int(inf.sum())
            gaps.append(col)
        big = np.isfinite(values) & (np.abs(values) > CLIP)
        if big.any():
            values[big] = np.clip(values[big], -CLIP, CLIP)
            n_clip += int(big.sum())
            clipped.append(col)
        frame[col] = values
    notes = []
    if gaps:
        notes.append(
            f"{source}: {n_nan} missing and {n_inf} infinite value(s) in {len(gaps)} column(s), "
            f"filled with the training median by the preprocessing: {_short(gaps)}"
        )
    if clipped:
        notes.append(
            f"{source}: clipped {n_clip} value(s) with |x| > {CLIP:.0e} to +-{CLIP:.0e} in "
            f"{len(clipped)} column(s): {_short(clipped)}"
        )
    return frame, notes


def _to_float(series: pd.Series, col: str, source: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    text = series.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    missing = text.str.lower().isin(MISSING_NUMBER).to_numpy() | series.isna().to_numpy()
    bad = numbers.isna().to_numpy() & ~missing
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        where, line = data_row(series.index[row], source)
        raise DataError(
            f"{where}: column '{col}' data row {line} holds {series.iloc[row]!r}, not a number "
            f"({int(bad.sum())} such row(s)); fix the file or check the column layout"
        )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)


def data_row(label, source: str) -> tuple[str, int]:
    """(file, 1-based data row) of the row whose index label is `label`: rows keep the numbers the reader
    gave them after rows before them were dropped, and rows stacked from several files (an index of
    (file, row) pairs) name their own file rather than `source`."""
    if isinstance(label, tuple):
        return str(label[0]), int(label[1]) + 1
    return source, int(label) + 1


def _short(names: list[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


def to_seconds(values: pd.Series, col: str, source: str) -> np.ndarray:
    """A time column as float seconds (or the file's own unit when numeric): order is all that
    matters. Date-time text is ISO 8601 (corrected CIC CSVs) or day-first (CICFlowMeter, original CIC)."""
    # an empty cell: named as such, not as the first number of a column that no longer reads as numbers
    missing = values.isna().to_numpy()
    if missing.any():
        where, line = data_row(values.index[int(np.flatnonzero(missing)[0])], source)
        raise DataError(f"{where}: time column {col!r} data row {line} has no time ({int(missing.sum())} such "
                        "row(s)); fill or remove those rows")
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(dtype=np.float64)
    text = values.astype(str).str.strip()
    try:  # utc: offsets that change within the file (a capture across a daylight-saving switch) compare right
        stamps = pd.to_datetime(text, format="ISO8601", utc=True)
    except (ValueError, TypeError):
        # ISO rows read as ISO: read with the others, dayfirst would turn 2017-07-04 into 7 April
        iso = text.str.match(r"\d{4}-\d{1,2}-\d{1,2}").to_numpy()
        stamps = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
        if iso.any():
            stamps[iso] = pd.to_datetime(text[iso], format="ISO8601", errors="coerce", utc=True)
        if not iso.all():
            stamps[~iso] = pd.to_datetime(text[~iso], format="mixed", dayfirst=_day_first(text[~iso], col, source),
                                          errors="coerce", utc=True)
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        where, line = data_row(values.index[row], source)
        raise DataError(f"{where}: time column {col!r} data row {line} holds "
                        f"{values.iloc[row]!r}, not a time; fix or remove that row")
    stamps = stamps.dt.tz_convert(None)
    return (stamps - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy()


def _day_first(text: pd.Series, col: str, source: str) -> bool:
    """Whether dates written a/b/yyyy are day-first, decided for the whole column: a day above 12 in
    the first place says day-first (CICFlowMeter, the original CIC CSVs), in the second month-first
    (US style); a date that fits both is read the column's way, never row by row. Neither: day-first."""
    parts = text.str.extract(r"^(\d{1,2})[/.-](\d{1,2})[/.-]\d{2,4}").dropna().astype(int)
    if parts.empty:
        return True
    first, second = (parts[0] > 12).any(), (parts[1] > 12).any()
    if first and second:
        label = parts.index[(parts[1] > 12).to_numpy()][0]
        where, line = data_row(label, source)
        raise DataError(f"{where}: time column {col!r} mixes day-first and month-first dates (data row "
                        f"{line}: {text.loc[label]!r}); write its dates one way, e.g. ISO 8601")
    return not second
