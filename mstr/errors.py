"""User-facing errors: one line that says what is wrong and what to do, exit code 2, no traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

EXIT_USAGE = 2

F = TypeVar("F", bound=Callable)


class MstrError(Exception):
    """An error caused by the user's input or config, reported as one line.

    The message must name the file / row / key at fault and say what to do about it.
    """


class ConfigError(MstrError):
    """A config value that cannot work (e.g. a negative temperature)."""


class DataError(MstrError):
    """A data file that cannot be read or used as it is."""


def report_and_exit(err: BaseException) -> None:
    """Print a one-line error to stderr and exit with code 2."""
    message = " ".join(str(err).split())
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USAGE)


def user_errors_exit_2(fn: F) -> F:
    """Decorator for entry points: `MstrError` becomes one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MstrError as err:
            report_and_exit(err)

    return wrapper  # type: ignore[return-value]
