"""Check the command line before Hydra starts a run: unknown keys, bad group names and bad values
fail here with one line and exit code 2, before any output dir, data read or training."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from mstr.config import config_dir, validate
from mstr.errors import ConfigError

# Hydra's own flags: they print, or take a value, and run nothing we can check here.
_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                     "--experimental-rerun", "--package", "-p", "--cfg", "-c", "--info", "-i"}
_INFO_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc",
               "--cfg", "-c", "--info", "-i", "--resolve"}


_MAX_SWEEP_JOBS_CHECKED = 256


def preflight(argv: list[str], config_name: str, check_values: bool = True):
    """Returns the composed config of the fixed overrides (None for info flags like --help)."""
    if any(arg in _INFO_FLAGS or arg.split("=")[0] in _INFO_FLAGS for arg in argv):
        return None
    multirun = is_multirun(argv)
    overrides, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            skip = arg in _FLAGS_WITH_VALUE
            continue
        overrides.append(arg)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        # Sweeps are checked per job; here only the fixed overrides are composed.
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
        if sweeps and not multirun:
            raise ConfigError(f"{sweeps[0]}: several values are a sweep; add -m (multirun) to run one job each")
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=fixed)
            jobs = _sweep_jobs(parsed) if sweeps and check_values else []
            job_cfgs = []
            for job in jobs:  # each job of a sweep, so a bad value fails before the first job starts
                try:
                    job_cfgs.append((job, compose(config_name=config_name, overrides=job)))
                except (HydraException, OmegaConfBaseException) as err:
                    raise ConfigError(f"sweep job {_swept(job, sweeps)}: {_first_line(err)}") from None
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_first_line(err)) from None
    if check_values:
        validate(cfg)
        for job, job_cfg in job_cfgs:
            try:
                validate(job_cfg)
            except ConfigError as err:
                raise ConfigError(f"sweep job {_swept(job, sweeps)}: {err}") from None
    return cfg


def is_multirun(argv: list[str]) -> bool:
    return any(arg in ("-m", "--multirun", "hydra.mode=MULTIRUN") for arg in argv)


def _sweep_jobs(parsed) -> list[list[str]]:
    """The override list of each job of a basic sweep (choice / range values); [] if Hydra's basic
    sweeper cannot expand it here (e.g. glob sweeps): those are left to Hydra."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    try:
        return BasicSweeper.split_arguments(parsed, None)[0][:_MAX_SWEEP_JOBS_CHECKED]
    except Exception:
        return []


def _swept(job: list[str], sweeps: list[str]) -> str:
    keys = {s.split("=", 1)[0] for s in sweeps}
    return " ".join(o for o in job if o.split("=", 1)[0] in keys)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    cause = err.__cause__ or err.__context__
    if cause is not None and str(cause).strip():
        text = f"{text} ({str(cause).strip().splitlines()[0]})"
    return text.splitlines()[0] if text else type(err).__name__ + ": see `--help`"
