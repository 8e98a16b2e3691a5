"""`python -m mstr.train [overrides]`: train a teacher, a student, or a student distilled from a teacher.

Examples:
    python -m mstr.train                                   # distilled student on the embedded traffic
    python -m mstr.train model=student distill.temperature=4
    python -m mstr.train model=teacher                     # the teacher alone
    python -m mstr.train distill=none                      # the student without distillation
    python -m mstr.train -m distill.temperature=2,4,8      # a sweep (one output dir per job)
    python -m mstr.train resume=auto                       # continue the newest unfinished run of this config
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from mstr.cli import hydra_entry
from mstr.config import override_key
from mstr.errors import ConfigError
from mstr.jobs.train import is_distilling, run
from mstr.preflight import check_writable, is_multirun

__all__ = ["main", "run"]


_HYDRA_SAFE = re.compile(r"^[\w/.\-:+@]+$")


def _override_value(path: str) -> str:
    """A path as a Hydra override value (quoted when it holds characters the override grammar parses)."""
    if _HYDRA_SAFE.match(path):
        return path
    return "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _locate_resume(argv: list[str], cfg: Optional[DictConfig]) -> list[str]:
    """`resume=auto` / `ckpt_path=last` without a run dir: use the newest unfinished run dir of this config
    (under `<paths.log_dir>/<task_name>/runs/`), by adding `hydra.run.dir=<it>` to the command line."""
    if cfg is None:
        return argv
    wants = cfg.get("resume") == "auto" or cfg.get("ckpt_path") == "last"
    keys = {override_key(arg) for arg in argv}
    if not wants:
        return argv
    if is_multirun(argv):
        if cfg.get("ckpt_path") == "last" and "hydra.sweep.dir" not in keys:
            raise ConfigError("ckpt_path=last under -m: give hydra.sweep.dir=<the sweep's dir> (and prefer "
                              "resume=auto, which also starts the jobs that never ran)")
        return argv
    if "hydra.run.dir" in keys:
        return argv
    from mstr.jobs.rundir import config_key, find_resumable

    runs = Path(str(cfg.paths.log_dir)) / str(cfg.task_name) / "runs"
    found = find_resumable(runs, config_key(cfg))
    if found is not None:
        return [*argv, f"hydra.run.dir={_override_value(str(found))}"]
    if cfg.get("ckpt_path") == "last":
        raise ConfigError(f"ckpt_path=last: no unfinished run of this config with a last checkpoint under {runs}; "
                          "give its dir as hydra.run.dir=<run dir>, or use resume=auto to start one")
    return argv


def _resume_command(argv: list[str], sweep_dir: Optional[str] = None) -> str:
    """The command that continues this job, or the sweep in `sweep_dir` (or the one this job is of): the
    same arguments, resume=auto, and its run (or sweep) dir. A sweep's arguments are the ones its
    `multirun.yaml` records, since a job that submitit started has the launcher's command line, not the
    user's."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    def command(args: list[str], where: str) -> str:
        kept = [a for a in args
                if override_key(a) not in ("resume", "ckpt_path", "hydra.run.dir", "hydra.sweep.dir", "hydra.mode")]
        return shlex.join(["python", "-m", "mstr.train", *kept, "resume=auto", where])

    if sweep_dir is None:
        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return command(argv, f"hydra.run.dir={_override_value(str(Path(hc.runtime.output_dir).resolve()))}")
        sweep_dir = hc.sweep.dir
    return command(_sweep_arguments(Path(sweep_dir)) or argv,
                   f"hydra.sweep.dir={_override_value(str(Path(sweep_dir).resolve()))}")


def _sweep_arguments(sweep_dir: Path) -> Optional[list[str]]:
    """`-m` and the overrides of the sweep, as Hydra recorded them in `<sweep_dir>/multirun.yaml`."""
    try:
        overrides = OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides
        return ["-m", *overrides.hydra, *overrides.task]
    except Exception:  # not written yet, or not Hydra's file
        return None


def _check_checkpoint_files(cfg: Optional[DictConfig]) -> None:
    """Checkpoints named on the command line are read safely before Hydra starts: a file that is not a
    plain-data checkpoint (e.g. one carrying a pickle payload) fails here, before any output dir exists;
    so does a `ckpt_path` of a run of other settings."""
    if cfg is None:
        return
    from mstr.jobs.train import checkpoint_to_continue
    from mstr.training.safeload import load_weights_only

    teacher_ckpt, ckpt_path = OmegaConf.select(cfg, "distill.teacher_ckpt"), cfg.get("ckpt_path")
    if teacher_ckpt is not None:
        load_weights_only(teacher_ckpt)
    if ckpt_path not in (None, "last"):
        checkpoint_to_continue(cfg, ckpt_path)


def _check_given_run_dir(argv: list[str], cfg: Optional[DictConfig]) -> None:
    """A `hydra.run.dir` that holds another run is refused before Hydra writes this job's config into it:
    the dir would then show one run's config beside another's results (and checkpoints). Another config's
    run is refused; so is a finished run of this config, unless the job is its resumption (which reports it);
    so is a dir a running job holds (its log and records would take this job's). A DDP rank that Lightning
    starts is given its rank zero's dir, locked by rank zero: it joins that run."""
    from mstr.training.distributed import is_rank_zero

    given = _given(argv, "hydra.run.dir")
    if cfg is None or given is None or is_multirun(argv) or not is_rank_zero():
        return
    from mstr.jobs.rundir import CONFIG_KEY_FILE, RunLock, config_key, is_run_dir

    run_dir = Path(given)
    RunLock(run_dir).check_free()
    if not is_run_dir(run_dir):
        return
    if (run_dir / CONFIG_KEY_FILE).read_text().strip() != config_key(cfg):
        raise ConfigError(f"hydra.run.dir={run_dir}: holds a run of another config (see its .hydra/config.yaml); "
                          "give a new dir, or leave hydra.run.dir out")
    resumes = cfg.get("resume") == "auto" or cfg.get("ckpt_path") == "last"
    if not resumes and (run_dir / "metrics.json").is_file():
        raise ConfigError(f"hydra.run.dir={run_dir}: holds a finished run of this config (metrics.json); give a "
                          "new dir, or leave hydra.run.dir out")


def _given(argv: list[str], key: str) -> Optional[str]:
    """The value `key=...` has on the command line (unquoted), None when it is not there."""
    return next((a.split("=", 1)[1].strip("'\"") for a in argv if override_key(a) == key), None)


def _check_output_dirs(argv: list[str], cfg: Optional[DictConfig]) -> None:
    """The run (or sweep) dir, and the teacher cache a distillation run trains into, take files: an
    unwritable one is refused before Hydra makes the run dir (a traceback) or a teacher is trained for
    nothing."""
    if cfg is None:
        return
    run_key = "hydra.sweep.dir" if is_multirun(argv) else "hydra.run.dir"
    given = _given(argv, run_key)
    key, folder = (run_key, given) if given is not None else ("paths.log_dir", cfg.paths.log_dir)
    check_writable(key, folder)
    if is_distilling(cfg) and not cfg.distill.get("teacher_ckpt"):
        check_writable("paths.teacher_cache_dir", cfg.paths.teacher_cache_dir)


def _prepare(argv: list[str], cfg: Optional[DictConfig]) -> list[str]:
    """Before Hydra starts: checkpoints named on the command line are read safely, a run dir given is
    checked to be this job's, a resumption finds its run dir, and the dirs the job writes into are
    checked to take files."""
    _check_checkpoint_files(cfg)
    _check_given_run_dir(argv, cfg)
    argv = _locate_resume(argv, cfg)
    _check_output_dirs(argv, cfg)
    return argv


main = hydra_entry("train", run, check_values=True, prepare=_prepare, resume_command=_resume_command)


if __name__ == "__main__":
    main()
