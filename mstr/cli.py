"""The shape every Hydra entry point shares: check the command line first (one line, exit 2, nothing
written), then run the job, with `MstrError` reported the same way inside it and a stop by signal
reported with how to resume. Under `-m` a failing job is recorded in its dir while the others go on,
and the sweep ends with one line naming the failed jobs (mstr.jobs.multirun)."""

from __future__ import annotations

import signal
import sys
from typing import Callable, Optional

import hydra
from omegaconf import DictConfig

from mstr.config import config_dir
from mstr.errors import Interrupted, MstrError, report_and_exit, report_interrupt, user_error, write_error
from mstr.preflight import preflight


def _write_failed(cfg: DictConfig, err: OSError, resume_command: Optional[Callable[[list[str]], str]]) -> MstrError:
    """A write the filesystem refused, as one line: which file where known, and how to go on once there is
    room (the job's checkpoints are written aside and renamed, so the last one saved is whole)."""
    what = f"writing {err.filename} failed" if err.filename else "a write failed"
    then = f"resume with: {resume_command(sys.argv[1:])}" if resume_command else "run the command again"
    return MstrError(f"{what} while the job wrote into {cfg.paths.output_dir} ({err.strerror}); free space there, "
                     f"then {then}")


def hydra_entry(config_name: str, run: Callable[[DictConfig], object], check_values: bool = False,
                prepare: Optional[Callable[[list[str], Optional[DictConfig]], list[str]]] = None,
                resume_command: Optional[Callable[..., str]] = None) -> Callable[[], None]:
    """`main()` for `python -m <module>`: preflight (value checks too with `check_values`), then
    `prepare(argv, composed config)` may rewrite the command line (e.g. add the run dir to resume in),
    then `run(cfg)` under `hydra.main`. An `Interrupted` job exits 128 + signal, saying the command
    that continues it (`resume_command(argv)`); so does a sweep whose local jobs a signal stopped
    (`resume_command(argv, sweep_dir)`)."""

    def task(cfg: DictConfig) -> None:
        from mstr.jobs import multirun

        sweeping = multirun.in_multirun()
        if sweeping:
            multirun.spread_over_gpus(cfg)
        multirun.clear_failure(cfg)  # a job resumed in its dir starts without the last try's error
        try:
            run(cfg)
        except Interrupted as err:
            report_interrupt(err, resume_command(sys.argv[1:]) if resume_command else None)
        except Exception as err:
            if (failed := write_error(err)) is not None:  # a full disk: what to do, not where in the code
                err = _write_failed(cfg, failed, resume_command)
            if sweeping:
                multirun.job_failed(cfg, err)  # recorded in its dir; the other jobs go on
                return
            multirun.record_failure(cfg, err)  # the run dir says how it ended
            if (cause := user_error(err)) is not None:
                report_and_exit(cause)
            raise

    # Hydra names the job (and its log file) after the task's module: the entry point's (the caller's),
    # not this one's nor the job's.
    module = sys._getframe(1).f_globals.get("__name__", run.__module__)
    if module == "__main__":  # python -m mstr.<name>
        module = getattr(sys.modules["__main__"].__spec__, "name", module)
    task.__module__ = module
    hydra_main = hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(task)

    def main() -> None:
        from mstr.jobs.multirun import SweepStopped, failure_report

        try:
            cfg = preflight(sys.argv[1:], config_name, check_values=check_values,
                            sweep_hint="add -m (multirun) to run one job each")
            if prepare is not None:
                sys.argv[1:] = prepare(sys.argv[1:], cfg)
            hydra_main()
        except MstrError as err:
            report_and_exit(err)
        except SweepStopped as stop:
            report_interrupt(stop.interrupted, resume_command(sys.argv[1:], stop.sweep_dir) if resume_command else None)
        except KeyboardInterrupt:  # Ctrl+C before the job took over the signals: while the command line is checked
            report_interrupt(Interrupted(signal.SIGINT))

        failed = failure_report()
        if failed is not None:
            print(f"error: {failed[0]}", file=sys.stderr, flush=True)
            sys.exit(failed[1])

    return main
