"""argparse for the plain (non-Hydra) entry points, with the project's error shape: a bad option is one
line on stderr (a misspelt option named, with the closest one) and exit code 2, not argparse's usage block."""

from __future__ import annotations

import argparse
import difflib
import sys


class ArgumentParser(argparse.ArgumentParser):
    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)  # for error(): what was typed
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:
        # A misspelt option is the error to name, also where argparse first finds a required one missing.
        options = _options(self)
        for arg in getattr(self, "_given", []):
            flag = arg.split("=", 1)[0]
            if flag.startswith("--") and not any(o.startswith(flag) for o in options):
                close = difflib.get_close_matches(flag, options, n=1)
                message = f"unknown option {flag}" + (f"; did you mean {close[0]}?" if close else "")
                break
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr, flush=True)
        sys.exit(2)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of the parser and of its sub-commands' parsers."""
    found = []
    for action in parser._actions:
        found += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _options(sub)
    return found
