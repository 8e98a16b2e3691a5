"""Multirun jobs (`python -m mstr.train -m ...`, any Hydra launcher): a failing job is recorded and the
others go on; single-GPU jobs spread over the visible GPUs.

A job that raises writes `job_error.json` (its one-line error) into its dir instead of stopping the
sweep: with Hydra's basic launcher a user error would end the whole sweep at once (exit), and any
other error would be raised again only after the remaining jobs, as a traceback. `FailedJobs`, a
Hydra callback, collects these files when the sweep ends, in the process that launched it (also when
the jobs ran elsewhere, e.g. under submitit), and the entry point reports them in one line.

`StopLocalJobs`, another, passes a SIGINT / SIGTERM of the sweep's process on to the jobs that
`hydra/launcher=submitit_local` runs as processes of their own.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

from mstr.errors import Interrupted, MstrError, one_line, user_error

log = logging.getLogger("mstr.jobs.multirun")
ERROR_FILE = "job_error.json"
# what Lightning's launcher sets in the process that starts the other ranks
_LAUNCH_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "PL_GLOBAL_SEED")


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def given_on_command_line(key: str) -> bool:
    """Whether this Hydra job's command line set `key` (False outside a Hydra job: a composed config)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    from mstr.config import override_key

    return any(override_key(o) == key for o in HydraConfig.get().overrides.task)


def spread_over_gpus(cfg: DictConfig) -> None:
    """Before a multirun job: give a single-device GPU job GPU (job number mod visible GPUs), so that
    jobs a parallel launcher runs at the same time train on different GPUs."""
    from hydra.core.hydra_config import HydraConfig

    from mstr.training.distributed import visible_gpus

    trainer = cfg.get("trainer") or {}
    if trainer.get("accelerator") not in ("gpu", "cuda") or trainer.get("devices") != 1:
        return
    if trainer.get("strategy", "auto") not in ("auto", None):
        return
    count = len(visible_gpus())
    if count > 1:
        with open_dict(cfg):
            cfg.trainer.devices = [HydraConfig.get().job.num % count]
        log.info("job %d on GPU %d of %d", HydraConfig.get().job.num, cfg.trainer.devices[0], count)


def job_failed(cfg: DictConfig, err: Exception) -> None:
    """Record a failed job in its dir and its log; the sweep goes on."""
    cause, message = record_failure(cfg, err)
    if isinstance(cause, MstrError):
        log.error("job failed: %s", message)
    else:
        log.exception("job failed: %s: %s", type(cause).__name__, message)


def record_failure(cfg: DictConfig, err: Exception) -> tuple[Exception, str]:
    """`<job dir>/job_error.json`: see `record_failure_in`."""
    return record_failure_in(Path(str(cfg.paths.output_dir)), err)


def record_failure_in(out_dir: Path, err: Exception) -> tuple[Exception, str]:
    """`<out_dir>/job_error.json`: the error that ended the job (or sweep trial), so that `mstr.compare`
    lists the dir as failed, with it, and not as a run still going. Returns the error (the user error a
    wrapper held) and its message on one line."""
    from mstr.jobs.report import write_json
    from mstr.jobs.rundir import RunLock

    err = user_error(err) or err
    message = one_line(err)
    is_user_error = isinstance(err, MstrError)
    # a dir another running job holds is that job's (this one was refused it): its record stays its own
    if out_dir.is_dir() and not RunLock(out_dir).held_elsewhere():
        try:
            write_json(out_dir / ERROR_FILE, {"error": message if is_user_error else f"{type(err).__name__}: "
                                              f"{message}", "user_error": is_user_error})
        except OSError as failed:  # the disk that failed the job: its error is still reported, only not here
            log.warning("could not record the job's error in %s: %s", out_dir / ERROR_FILE, failed)
    return err, message


def clear_failure(cfg: DictConfig) -> None:
    (Path(str(cfg.paths.output_dir)) / ERROR_FILE).unlink(missing_ok=True)


class FailedJobs(Callback):
    """Collects the failed jobs of a sweep at its end (`found`: [(job dir, error record)])."""

    found: list[tuple[Path, dict]] = []
    jobs: int = 0

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        FailedJobs.found, FailedJobs.jobs = [], 0

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        FailedJobs.jobs = len(list(sweep_dir.glob("**/.hydra/config.yaml")))
        FailedJobs.found = [(path.parent, json.loads(path.read_text())) for path in sorted(sweep_dir.glob(f"**/{ERROR_FILE}"))]


class SweepStopped(BaseException):
    """The sweep's process stopped its local jobs on a signal (`StopLocalJobs`). A BaseException, so
    that Hydra, which reports any Exception of a sweep as a traceback and exit 1, lets it through to
    the entry point, which reports `interrupted` in one line."""

    def __init__(self, interrupted: Interrupted, sweep_dir: str):
        super().__init__(str(interrupted))
        self.interrupted, self.sweep_dir = interrupted, sweep_dir


class StopLocalJobs(Callback):
    """`hydra/launcher=submitit_local` runs each job under a controller process of its own. A SIGTERM
    to the sweep's process (a scheduler, `kill`) ended that process alone, and the jobs trained on,
    orphaned. Here the sweep's process passes SIGINT / SIGTERM on to the controllers as SIGTERM, which
    they forward to their job (it saves last.ckpt and stops), waits for them, and raises `SweepStopped`.
    A second signal kills the jobs at once. Other launchers run the jobs in this process (their own
    handlers stop them) or on a cluster's scheduler."""

    _previous: dict = {}

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if launcher.endswith("submitit_launcher.LocalLauncher") and threading.current_thread() is threading.main_thread():
            stop = functools.partial(_stop_jobs, str(config.hydra.sweep.dir))
            StopLocalJobs._previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        for sig, handler in StopLocalJobs._previous.items():
            signal.signal(sig, handler)
        StopLocalJobs._previous = {}


def _stop_jobs(sweep_dir: str, signum: int, frame) -> None:
    import psutil

    jobs = psutil.Process().children()
    log.warning("received %s: stopping %d local job(s); each saves its last.ckpt (send it again to kill them at "
                "once)", signal.Signals(signum).name, len(jobs))

    def kill(again: int, frame) -> None:
        for job in jobs:
            for process in [*job.children(recursive=True), job]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, kill)
    for job in jobs:
        with contextlib.suppress(psutil.NoSuchProcess):
            job.terminate()
    psutil.wait_procs(jobs)
    saved = len(list(Path(sweep_dir).glob("*/checkpoints/last.ckpt")))
    where = f"{sweep_dir}/<job>/checkpoints/last.ckpt ({saved} job{'s' * (saved != 1)})" if saved else None
    raise SweepStopped(Interrupted(signum, where, saved=True), sweep_dir)


def failure_report() -> tuple[str, int] | None:
    """(one line naming the failed jobs, exit code: 2 when all were user errors, else 1), or None."""
    if not FailedJobs.found:
        return None
    listed = "; ".join(f"{job_dir}: {record['error']}" for job_dir, record in FailedJobs.found)
    code = 2 if all(record.get("user_error") for _, record in FailedJobs.found) else 1
    failed = len(FailedJobs.found)
    others = " (the others finished)" if failed < FailedJobs.jobs else ""
    return f"{failed} of {FailedJobs.jobs} jobs failed{others}: {listed}", code


@contextlib.contextmanager
def job_command_line() -> Iterator[None]:
    """Under `-m`, Lightning would start each extra DDP rank with the whole sweep's command line (`-m`
    and every swept value) and Hydra's run-dir pattern, so the rank would run the sweep again somewhere
    else. For the duration of one job, the command line is that job's own overrides and Hydra's run dir
    is the job's dir: the ranks Lightning starts join this job. Afterwards the process group and the
    variables Lightning set for it are gone, so that the next job starts its own ranks. Outside a
    multirun: nothing changes."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    hydra_cfg = HydraConfig.get()
    argv, run_dir = list(sys.argv), hydra_cfg.run.dir
    environment = {key: os.environ.get(key) for key in _LAUNCH_VARIABLES}
    sys.argv[1:] = list(hydra_cfg.overrides.task)
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv[:] = argv
        with read_write(hydra_cfg.run):
            hydra_cfg.run.dir = run_dir
        _end_process_group(environment)


def _end_process_group(environment: dict[str, Optional[str]]) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in environment.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
