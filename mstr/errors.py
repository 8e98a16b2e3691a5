"""User-facing errors: one line that says what is wrong and what to do, exit code 2, no traceback."""

from __future__ import annotations

import errno
import signal
import sys
from typing import Iterator, Optional

EXIT_USAGE = 2
# A write the filesystem refused for want of room (a full disk, a quota, a file size limit) or because it
# is read-only: the disk's state, not a bug.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


class MstrError(Exception):
    """An error caused by the user's input or config, reported as one line.

    The message must name the file / row / key at fault and say what to do about it.
    """


class ConfigError(MstrError):
    """A config value that cannot work (e.g. a negative temperature)."""


class DataError(MstrError):
    """A data file that cannot be read or used as it is."""


class Interrupted(Exception):
    """SIGINT / SIGTERM stopped the run: at a safe point after saving `checkpoint`, or at once.

    Not an `MstrError`: the exit code is 128 + the signal number (130 for Ctrl+C, 143 for SIGTERM).
    """

    def __init__(self, signum: int, checkpoint: Optional[str] = None, saved: bool = False):
        self.signum, self.checkpoint, self.saved = int(signum), checkpoint, saved
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def report_interrupt(err: Interrupted, resume_command: Optional[str] = None) -> None:
    """One line on stderr (what was saved, how to resume), then exit 128 + signal number."""
    if err.checkpoint and err.saved:
        what = f"saved {err.checkpoint}"
    elif err.checkpoint:
        what = f"the last checkpoint is {err.checkpoint}"
    else:
        what = "no checkpoint was saved yet"
    how = f"; resume with: {resume_command}" if resume_command else ""
    # on a terminal the progress bar's line is still open: the message goes on a line of its own
    start = "\n" if sys.stderr.isatty() else ""
    print(f"{start}interrupted by {err.signal_name}: {what}{how}", file=sys.stderr, flush=True)
    sys.exit(err.exit_code)


def _causes(err: Optional[BaseException]) -> Iterator[BaseException]:
    """`err`, then the exception it was raised from, and so on."""
    seen = set()
    while err is not None and id(err) not in seen:
        yield err
        seen.add(id(err))
        err = err.__cause__


def user_error(err: BaseException) -> Optional[MstrError]:
    """The `MstrError` behind `err`, if any: Hydra's `instantiate` wraps what a constructor raises (a
    DataModule's bad `data.*` value, say) in an exception of its own, with the original as its cause."""
    return next((e for e in _causes(err) if isinstance(e, MstrError)), None)


def write_error(err: BaseException) -> Optional[OSError]:
    """The refused write behind `err` (`WRITE_ERRNOS`), if any."""
    return next((e for e in _causes(err) if isinstance(e, OSError) and e.errno in WRITE_ERRNOS), None)


def one_line(err: BaseException) -> str:
    """The error's message on one line (its type's name when it has none): for stderr, logs and the
    error records of failed jobs and trials."""
    return " ".join(str(err).split()) or type(err).__name__


def report_and_exit(err: BaseException) -> None:
    """Print a one-line error to stderr and exit with code 2."""
    message = one_line(err)
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USAGE)
