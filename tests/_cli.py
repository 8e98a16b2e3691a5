"""Running mstr's entry points as a user does: a fresh process, outputs under a temporary dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SMALL, without_plots


def cli_env(log_dir: Path, **extra: str) -> dict:
    # One intra-op thread per process: these tiny models run fastest so, and parallel processes share
    # the 2 cores instead of fighting over them.
    env = {**os.environ, "MSTR_LOG_DIR": str(log_dir), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_cli(module: str, args: list[str], cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` in `cwd` (logs under cwd/logs); stdout and stderr captured."""
    cwd.mkdir(parents=True, exist_ok=True)
    if module == "mstr.train":
        args = [*args, *without_plots(args)]
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=cli_env(cwd / "logs", **env),
                          capture_output=True, text=True, timeout=timeout)


__all__ = ["REPO", "SMALL", "cli_env", "run_cli"]
