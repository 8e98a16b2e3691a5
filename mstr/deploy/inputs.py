"""The lines a detector reads: a file (gzip too), stdin, or a log that keeps growing (`--follow`).

A followed log is read as `tail -F` reads it. Flow logs are rotated: Zeek renames `conn.log` away
every hour and starts a new one, logrotate may truncate in place (copytruncate). At the end of the
file the path is looked at again; when it names another file (rotation) or a shorter one
(truncation), reading goes on from that file's start, after a `NewFile` marker that tells the parser
a header may follow. A path that is gone is waited for, with one warning, until it is created again,
and so is one that is not there yet when the detector starts (`followed`).
"""

from __future__ import annotations

import codecs
import gzip
import io
import logging
import os
import sys
import time
import zlib
from typing import IO, Iterator, Optional, Union

from mstr.deploy.sources import CutLine, NewFile
from mstr.errors import DataError

log = logging.getLogger("mstr.detect")
POLL_S = 0.2  # how often a followed log at its end is read again


def _as_windows_1252(err: UnicodeDecodeError) -> tuple[str, int]:
    """Bytes that are not UTF-8 read as Windows-1252, as training's reader reads a file that is not UTF-8
    (`mstr.data.readers`): a category 'Café' of such a file is then the category training saw."""
    return err.object[err.start:err.end].decode("cp1252", errors="replace"), err.end


codecs.register_error("mstr-cp1252", _as_windows_1252)


def open_text(path: str) -> IO[str]:
    """The input as UTF-8 text lines ended by "\n" only, bytes that are not UTF-8 read as Windows-1252: a
    stray "\r" or binary junk is then one bad line, counted, and the line numbers of a file and of stdin agree. A
    leading byte-order mark is dropped, as training's reader drops it (else it sticks to the first
    field: a KDD line's duration, a header's first name). A regular file may be gzip; a pipe, FIFO or
    device (`/dev/stdin`, `<(zcat ...)`) is read as text, since looking at its first bytes would consume them."""
    text = {"encoding": "utf-8-sig", "errors": "mstr-cp1252", "newline": "\n"}
    if path == "-":
        if hasattr(sys.stdin, "reconfigure"):  # a real stream (not one a caller swapped in)
            sys.stdin.reconfigure(**text)
        return sys.stdin
    try:
        gz = False
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                gz = fh.read(2) == b"\x1f\x8b"
        return io.TextIOWrapper(io.BufferedReader(_BreaksAtLineEnd(gzip.open(path))), **text) if gz else open(path, **text)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None


class _BreaksAtLineEnd(io.RawIOBase):
    """A gzip file's bytes whose read error (a truncated or corrupt file) comes at a line's end: broken
    off inside a line, the read first ends there, so the text layer hands that line over (`lines` counts
    it bad) instead of losing it, and the next read raises."""

    def __init__(self, gz: gzip.GzipFile):
        self.gz, self.error, self.at_line_end = gz, None, True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.error is None:
            try:
                n = self.gz.readinto1(buffer)  # one read of the file: data before an error is kept
            except (OSError, EOFError, zlib.error) as err:
                self.error = err
                if not self.at_line_end:
                    return 0
            else:
                self.at_line_end = buffer[n - 1] == ord("\n") if n else self.at_line_end
                return n
        raise self.error

    def close(self) -> None:
        self.gz.close()
        super().close()


def _offset(handle: IO[str]) -> Optional[int]:
    """Bytes read so far from a plain file (None for stdin, gzip and other streams: never re-opened)."""
    if isinstance(handle, io.TextIOWrapper) and isinstance(handle.buffer, io.BufferedReader):
        try:
            return handle.buffer.tell()
        except OSError:  # a pipe or FIFO
            return None
    return None


def _changed(handle: IO[str], path: str) -> Optional[str]:
    """What became of a followed file at its end: "gone", "rotated" (the path names another file),
    "truncated" (the same file, now shorter than what was read), or None."""
    offset = _offset(handle)
    if offset is None:
        return None
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return "gone"
    except OSError:
        return None
    mine = os.fstat(handle.fileno())
    if (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev):
        return "rotated"
    return "truncated" if now.st_size < offset else None


def lines(handle: IO[str], follow: bool, name: str = "-") -> Iterator[Union[str, NewFile, CutLine]]:
    """Lines of a text stream; with `follow`, wait for more at a file's end (a growing log) instead of
    stopping, and go on in the file that replaces it (rotation) or from its start (truncation). Stdin
    (`name` "-"), a pipe or a FIFO ends at its end either way: a closed pipe has nothing more to give."""
    follow = follow and name != "-" and os.path.isfile(name)
    pending = ""
    waiting = ""  # what the path was found to be, already logged, while it cannot be read
    while True:
        try:
            line = handle.readline()
        except (OSError, EOFError, zlib.error) as err:  # e.g. a truncated gzip
            if pending:  # the line it broke off in
                yield CutLine(pending)
            raise DataError(f"{name}: cannot be read further ({err}); the flows before were scored") from None
        if line.endswith("\n"):
            yield pending + line
            pending = ""
            continue
        if line:
            pending += line  # a line still being written
            continue
        if not follow:
            if pending:
                yield pending
            return
        change = _changed(handle, name)
        if change == "gone":
            if waiting != change:
                log.warning("%s: gone (rotated away or deleted); waiting for it to be created again", name)
                waiting = change
        elif change is not None:
            successor = None
            if change == "rotated":
                try:
                    successor = open_text(name)
                except DataError as err:  # e.g. not yet readable, or a folder now: tried again at each poll
                    if waiting != str(err):
                        log.warning("%s; waiting for a file that can be read", err)
                        waiting = str(err)
                    time.sleep(POLL_S)
                    continue
            if pending:  # the old file's last line, never ended by a newline
                yield pending
                pending = ""
            if successor is not None:
                handle.close()
                handle = successor
            else:
                handle.seek(0)
            log.info("%s: %s; reading it from its start", name, "a new file" if change == "rotated" else "truncated")
            waiting = ""
            yield NewFile(change)
            continue
        time.sleep(POLL_S)


def followed(path: str) -> Iterator[Union[str, NewFile]]:
    """`lines(..., follow=True)` of a log path that may not exist yet (a detector started before the
    logger): waited for, with one warning, as `tail -F` waits."""
    if not os.path.exists(path):
        log.warning("%s: not there yet; waiting for it to be created", path)
        while not os.path.exists(path):
            time.sleep(POLL_S)
    yield from lines(open_text(path), True, path)
