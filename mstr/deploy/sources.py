"""Flow records from the inputs a detector reads: text lines in the artifact's format, or a pcap.

Formats (the `input.format` of an artifact, i.e. what its model was trained on):
    nsl_kdd                     header-less KDD lines (41 features, optionally label and difficulty)
    zeek                        a Zeek TSV log (conn.log): `#separator` / `#fields` headers, `-` unset
    csv, tsv, cicflowmeter,     a delimited table whose first line is the header; CICFlowMeter's
    nfstream                    spellings are aliased as in training
A pcap is turned into NFStream flows (the columns of `NFStreamer.to_csv`), so it feeds a model trained
with `data=flows data.format=nfstream`.

Each line is parsed on its own: a bad line raises `BadRecord` and the stream goes on. A detector
parses the lines of a batch together (`LineParser.parse_many`): plain data lines are split on the
delimiter and their numbers converted together, anything else takes the line-by-line path.
"""

from __future__ import annotations

import csv
import logging
import os
import struct
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence, Union

from mstr.deploy.features import (BadRecord, CategoryTexts, FeatureEncoder, NumberTexts, Record, cleans_categories,
                                  repair)
from mstr.errors import DataError

log = logging.getLogger("mstr.detect")
LINE_FORMATS = ("nsl_kdd", "zeek", "csv", "tsv", "cicflowmeter", "nfstream")
# Columns that identify a flow in alerts (the 5-tuple and flow ids of the layouts mstr knows), if present.
IDENT_COLUMNS = ("uid", "Flow ID", "id", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
                 "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "Src IP", "Src Port", "Dst IP",
                 "Dst Port", "Protocol", "srcip", "sport", "dstip", "dsport", "src_host", "src", "dst", "dport",
                 "saddr", "daddr")
PCAP_MAGIC = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
              b"\x0a\x0d\x0d\x0a")  # libpcap (both byte orders, us / ns) and pcapng
PCAP_SUFFIXES = (".pcap", ".pcapng", ".cap")  # for a path with no bytes yet to sniff


class NewFile(NamedTuple):
    """In a followed log's lines (`mstr.deploy.inputs`): the path now names a new file, "rotated" or
    "truncated", read from its start; a header line may come next."""

    change: str


class CutLine(NamedTuple):
    """In an input's lines (`mstr.deploy.inputs`): the start of the line a truncated or corrupt input
    ends in; a bad line, never a flow whose last value was cut short."""

    text: str


def capture_cut_at(path: str | Path) -> Optional[int]:
    """Where a capture file breaks off inside a packet (a copy made while it was written, a `head -c`),
    as a byte offset; None when its last record is whole. libpcap and NFStream read such a file to the
    cut without a word. Only the record headers are read: libpcap's 16-byte ones (whose third field is
    the bytes stored), pcapng's blocks (type, total length)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
        if magic == PCAP_MAGIC[4]:  # pcapng: the byte order is in the section header's own magic
            fh.seek(8)
            order = "<" if fh.read(4) == b"\x4d\x3c\x2b\x1a" else ">"
            pos, header, length_at = 0, 8, 4
        elif magic in PCAP_MAGIC:
            order = "<" if magic in (PCAP_MAGIC[0], PCAP_MAGIC[2]) else ">"
            pos, header, length_at = 24, 16, 8
        else:
            return None
        while pos < size:
            fh.seek(pos)
            head = fh.read(header)
            if len(head) < header:  # cut inside a record's header
                return pos
            length = struct.unpack_from(f"{order}I", head, length_at)[0]
            record = header + length if header == 16 else length  # a pcapng length counts its header
            if record < header or pos + record > size:  # a broken length, or cut inside the packet
                return pos
            pos += record
    return None


def is_pcap(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in PCAP_MAGIC
    except OSError:
        return False


class LineParser:
    """Turns the lines of one input into `Record`s, keeping the header state of that input."""

    def __init__(self, spec: dict[str, Any], encoder: FeatureEncoder, name: str = "the input"):
        source = spec["input"]
        self.source = name  # the file (or stdin) named in errors
        self.format = source["format"]
        if self.format not in LINE_FORMATS:
            raise DataError(f"artifact input format {self.format!r} is not one of {list(LINE_FORMATS)}")
        self.encoder = encoder
        self.aliases = dict(source.get("aliases") or {})
        self.time_col, self.group_col = source.get("time_col"), source.get("group_col")
        self.windowed = int(spec.get("window", 1)) > 1  # a flow is scored with its host's earlier flows
        self.said_no_group = False
        self.clean = cleans_categories(source)
        self.delimiter = "\t" if self.format in ("tsv", "zeek") else (source.get("delimiter") or ",")
        self.columns: Optional[list[str]] = list(source["columns"]) if source.get("columns") else None
        self.ident: list[str] = []
        self.numbers = NumberTexts()
        self.category_texts, self.group_texts = CategoryTexts(self.clean), CategoryTexts(True)
        self.reads_header = self.format not in ("nsl_kdd", "zeek") and self.columns is None
        self.needed = [*encoder.numeric_cols, *encoder.categorical_cols]
        self.header_names = {*self.needed, *self.aliases}  # texts a header line holds where values go
        if self.columns:
            self._set_columns(self.columns)
        self.fresh = (self.columns, self.delimiter)  # what a new file of this input starts from

    def restart(self) -> None:
        """A new file of the same input begins: a format whose header names the columns (and a Zeek
        `#separator`) is read from its header again."""
        columns, self.delimiter = self.fresh
        if columns is None:
            self.columns = None

    def _is_header(self, fields: list[str]) -> bool:
        """A line of the model's column names where data was expected: the header again, as when files
        with a header each are joined (`cat a.csv b.csv`), perhaps with the columns in another order."""
        return self.reads_header and set(self.needed) <= {self.aliases.get(f.strip(), f.strip()) for f in fields}

    def _ident(self, names) -> list[str]:
        """The columns that name a flow in its verdict: the 5-tuple / flow id ones present, and the host
        column the model's windows follow (`data.group_col`), whatever it is called."""
        return list(dict.fromkeys(c for c in (*IDENT_COLUMNS, self.group_col) if c and c in names))

    def may_be_header(self, line: str) -> bool:
        """Whether a line the input would drop holds the model's column names (a header again); asked
        only of lines about to be dropped, from the reader thread (it reads nothing `parse` changes)."""
        return self._is_header(line.rstrip("\r\n").split(self.delimiter))

    def _set_columns(self, names: list[str]) -> None:
        self.columns = [self.aliases.get(n.strip(), n.strip()) for n in names]
        missing = [c for c in self.needed if c not in self.columns]
        if missing:
            if any("\x00" in c or "\ufffd" in c for c in self.columns):
                raise DataError(f"{self.source}: binary data where a {self.format} header should be (a pcap or a "
                                "compressed file through a pipe?); give a pcap or a gzip file as --input <file>")
            if len(names) == 1 and set(names[0]) & set(",;\t|"):  # the columns are there, split by another delimiter
                raise DataError(f"{self.source}: its header is one field when split on {self.delimiter!r}, the "
                                f"delimiter of the flows the model was trained on; write the flows with it (header: "
                                f"{names[0][:60]!r}...)")
            raise DataError(f"{self.source}: its header lacks column(s) {missing[:5]} that the model reads; is this "
                            f"{self.format} data? (header: {self.columns[:8]}...)")
        self.ident = self._ident(self.columns)
        if self.windowed and self.group_col and self.group_col not in self.columns and not self.said_no_group:
            self.said_no_group = True
            log.warning("%s: no %r column, so the flows form one window stream, not one per host as in training: "
                        "scores differ from the model's on the same flows", self.source, self.group_col)
        # Where a record's values sit in a line's fields. A repeated name is read from its first copy, as
        # training's reader keeps it (the original CIC-IDS2017 CSVs repeat `Fwd Header Length`).
        position: dict[str, int] = {}
        for i, c in enumerate(self.columns):
            position.setdefault(c, i)
        repeated = sorted({c for i, c in enumerate(self.columns) if position[c] != i})
        if repeated:
            log.warning("%s: repeated column(s) %s in the header; the first copy of each is read", self.source,
                        repeated[:5])
        self.position = position
        self.numeric_at = [position[c] for c in self.encoder.numeric_cols]
        self.pick_numbers = _picker(self.numeric_at)
        self.category_at = [position[c] for c in self.encoder.categorical_cols]
        self.group_at, self.time_at = position.get(self.group_col), position.get(self.time_col)
        self.ident_at = [(c, position[c]) for c in self.ident]
        self.fields_needed = 1 + max([*self.numeric_at, *self.category_at, *(p for _, p in self.ident_at),
                                      *(p for p in (self.group_at, self.time_at) if p is not None), -1])

    def parse(self, line: str, seq: int) -> Optional[Record]:
        """The record of one line, or None for a header, comment or blank line."""
        line = line.rstrip("\r\n")
        if not line.strip():
            return None
        if self.format == "zeek" and line.startswith("#"):
            self._zeek_header(line)
            return None
        try:
            fields = next(csv.reader([line], delimiter=self.delimiter, quoting=csv.QUOTE_NONE
                                     if self.format == "zeek" else csv.QUOTE_MINIMAL))
        except csv.Error as err:  # e.g. a bare \r inside the line: binary junk, a gzip fed as text
            raise BadRecord("a carriage return inside the line (binary data?)" if "\r" in line
                            else f"cannot be split into fields ({err})") from None
        if self.columns is None or self._is_header(fields):
            if self.format == "zeek":
                raise DataError(f"{self.source}: Zeek input without a '#fields' header line; is it a conn.log?")
            self._set_columns(fields)
            return None
        if self.format == "nsl_kdd":  # the label and difficulty may be absent; more fields is another format
            if not len(self.columns) - 2 <= len(fields) <= len(self.columns):
                raise BadRecord(f"{len(fields)} fields, expected {len(self.columns) - 2} to {len(self.columns)}")
        elif len(fields) != len(self.columns):
            raise BadRecord(f"{len(fields)} fields where the header has {len(self.columns)}")
        return self.record(self._values(fields), seq)

    def parse_many(self, entries: list[tuple[int, Any]]) -> list[Union[Record, None, BadRecord, DataError]]:
        """What `parse` (for a line) or `record` (for a flow dict) makes of each (seq, item), in order,
        with the `BadRecord` an item raised in its place. An input refused where it stands (a header
        without the model's columns) ends the list with its `DataError`: the records before it are
        still there to be scored. Runs of plain data lines (no quotes, the header's field count) are
        split on the delimiter and their numbers converted together, through a memo of number texts
        (`NumberTexts`): converting each line's numbers on its own was most of `mstr.detect`'s time."""
        out: list[Union[Record, None, BadRecord, DataError]] = []
        run: list[tuple[int, list[str]]] = []
        for seq, item in entries:
            if isinstance(item, NewFile):
                out.extend(self._parse_run(run))
                run = []
                self.restart()
                out.append(None)
                continue
            fields = self._plain_fields(item)
            if fields is not None:
                run.append((seq, fields))
                continue
            out.extend(self._parse_run(run))  # before a header line can change the columns
            run = []
            if isinstance(item, CutLine):
                out.append(BadRecord("cut short where the input breaks off; the rest of the flow is lost"))
                continue
            try:
                out.append(_or_error(self.parse if isinstance(item, str) else self.record, item, seq))
            except DataError as err:
                out.append(err)
                return out
        out.extend(self._parse_run(run))
        return out

    def _plain_fields(self, item: Any) -> Optional[list[str]]:
        """The fields of a data line that a split on the delimiter reads as `parse` would; None for
        anything `parse` must see (headers, comments, blank lines, quotes, a wrong field count)."""
        if not isinstance(item, str) or self.columns is None:
            return None
        line = item.rstrip("\r\n")
        if ("\r" in line or (self.format == "zeek" and line.startswith("#"))
                or ('"' in line and self.format != "zeek") or not line.strip()):
            return None
        fields = line.split(self.delimiter)
        if self.format == "nsl_kdd":  # the label and difficulty may be absent
            fit = max(len(self.columns) - 2, self.fields_needed) <= len(fields) <= len(self.columns)
        else:
            fit = len(fields) == len(self.columns)
        if fit and self.reads_header and self.numeric_at and fields[self.numeric_at[0]].strip() in self.header_names:
            return None  # a name where a number goes: perhaps the header again, which `parse` reads
        return fields if fit else None

    def _parse_run(self, run: list[tuple[int, list[str]]]) -> list[Union[Record, BadRecord]]:
        if not run:
            return []
        numeric = self.numbers.table(chain.from_iterable(self.pick_numbers(fields) for _, fields in run), len(run))
        if numeric is None:  # a missing token or a bad value somewhere: find the line, which takes the
            if len(run) > 1:  # careful path with its errors, while the others still convert together
                return [outcome for entry in run for outcome in self._parse_run([entry])]
            seq, fields = run[0]
            if self._is_header(fields):  # the header again, with a column the model does not read where
                self._set_columns(fields)  # the first number went (`_plain_fields` only knows the names it reads)
                return []
            return [_or_error(self.record, self._values(fields), seq)]
        numeric, repaired = repair(numeric)
        texts, hosts = self.category_texts.bound(), self.group_texts.bound()
        at, group, time, ident_at = self.category_at, self.group_at, self.time_at, self.ident_at
        # `category` as `encoder.record` applies it, through the memos
        groups = ([hosts[fields[group]] for _, fields in run] if group is not None else [""] * len(run)) \
            if self.group_col else [None] * len(run)
        return [Record(seq, row, [texts[fields[i]] for i in at], host, fields[time] if time is not None else None,
                       {c: fields[i] for c, i in ident_at}, fixed)
                for (seq, fields), row, fixed, host in zip(run, numeric, repaired.tolist(), groups)]

    def _values(self, fields: list[str]) -> dict[str, str]:
        """{column: field} of a line (an NSL-KDD line may lack its last two, label and difficulty)."""
        return {c: fields[i] for c, i in self.position.items() if i < len(fields)}

    def record(self, values: dict[str, Any], seq: int) -> Record:
        """The record of one flow given as {column: value} (a parsed line, or an NFStream flow)."""
        if self.columns is None and not self.ident:  # flows without a header line: name them by their keys
            self.ident = self._ident(values)
        return self.encoder.parse(values, seq, self.group_col, self.time_col, self.ident, self.clean)

    def _zeek_header(self, line: str) -> None:
        if line.startswith("#separator"):
            raw = line[len("#separator"):].strip() or "\\x09"
            self.delimiter = raw.encode().decode("unicode_escape")
        elif line.startswith("#fields"):
            self._set_columns(line.split(self.delimiter)[1:])


def _or_error(parse: Callable[[Any, int], Optional[Record]], item: Any, seq: int) -> Union[Record, None, BadRecord]:
    try:
        return parse(item, seq)
    except BadRecord as err:
        return err


def _picker(positions: list[int]) -> Callable[[Sequence[str]], tuple]:
    """A function giving the fields at `positions` as a tuple (itemgetter, which gives one item bare)."""
    if len(positions) == 1:
        return lambda fields, at=positions[0]: (fields[at],)
    return itemgetter(*positions) if positions else (lambda fields: ())


def pcap_flows(path: str | Path) -> Iterator[dict[str, Any]]:
    """NFStream flows of a pcap as {column: value}, the columns `NFStreamer.to_csv` writes."""
    try:
        from nfstream import NFStreamer
    except ImportError:
        raise DataError("reading a pcap needs nfstream: pip install nfstream") from None
    try:
        for flow in NFStreamer(source=str(path)):
            yield dict(zip(flow.keys(), flow.values()))
    except ValueError as err:  # NFStream's word for a capture libpcap refuses (a cut header, another version)
        raise DataError(f"{path}: NFStream cannot read it as a capture ({err}); give a whole pcap / pcapng "
                        "file") from None
