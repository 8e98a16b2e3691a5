"""The shape every Hydra entry point shares: check the command line first (one line, exit 2, nothing
written), then run the job, with `MstrError` reported the same way inside it."""

from __future__ import annotations

import sys
from typing import Callable

import hydra
from omegaconf import DictConfig

from mstr.config import config_dir
from mstr.errors import MstrError, report_and_exit
from mstr.preflight import preflight


def hydra_entry(config_name: str, run: Callable[[DictConfig], object], check_values: bool = False) -> Callable[[], None]:
    """`main()` for `python -m <module>`: preflight, then `run(cfg)` under `hydra.main`."""

    def task(cfg: DictConfig) -> None:
        try:
            run(cfg)
        except MstrError as err:
            report_and_exit(err)

    # Hydra names the job (and its log file) after the task's module: the entry point's, not this one.
    module = run.__module__
    if module == "__main__":  # python -m mstr.<name>
        module = getattr(sys.modules["__main__"].__spec__, "name", module)
    task.__module__ = module
    hydra_main = hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(task)

    def main() -> None:
        try:
            preflight(sys.argv[1:], config_name, check_values=check_values)
        except MstrError as err:
            report_and_exit(err)
        hydra_main()

    return main
