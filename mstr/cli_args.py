"""argparse for the plain (non-Hydra) entry points, with the project's error shape: a bad option is one
line on stderr (a misspelt option named, with the closest one) and exit code 2, not argparse's usage block."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Callable


class ArgumentParser(argparse.ArgumentParser):
    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)  # for error(): what was typed
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:
        given = getattr(self, "_given", [])
        subs = _subcommands(self)
        chosen = next((i for i, arg in enumerate(given) if arg in subs), None)
        command = f"{self.prog} {given[chosen]}" if chosen is not None else self.prog
        own = _options(self)
        known = own + (_options(subs[given[chosen]]) if chosen is not None else [])
        # A misspelt option is the error to name, also where argparse first finds a required one missing;
        # a sub-command's option typed before the sub-command, or after another one, is named as such.
        # A first word that is no sub-command is the error itself (argparse names it, with the choices).
        misspelt_command = bool(subs) and chosen is None and bool(given) and not given[0].startswith("-")
        for i, arg in enumerate([] if misspelt_command else given):
            flag = arg.split("=", 1)[0]
            here = known if chosen is not None and i > chosen else own
            if not flag.startswith("--") or any(o.startswith(flag) for o in here):
                continue
            owners = [name for name, sub in subs.items() if any(o.startswith(flag) for o in _options(sub))]
            if owners and (chosen is None or i < chosen):
                message = f"{flag} goes after the sub-command: {self.prog} {'|'.join(owners)} {flag} ..."
            elif owners:
                message = f"{flag} is not an option of {given[chosen]} but of {', '.join(owners)}"
            else:
                close = difflib.get_close_matches(flag, here, n=1)
                message = f"unknown option {flag}" + (f"; did you mean {close[0]}?" if close else "")
            break
        print(f"error: {message} (see {command} --help)", file=sys.stderr, flush=True)
        sys.exit(2)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for action in parser._actions for o in action.option_strings]


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type=`: an integer >= `minimum`, else argparse's one-line error (exit 2). Counts (the
    benchmarks' rows, epochs, threads; the synthetic generator's flows) are checked so, before any work."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return parse
