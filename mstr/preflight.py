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


def preflight(argv: list[str], config_name: str, check_values: bool = True) -> None:
    if any(arg in _INFO_FLAGS or arg.split("=")[0] in _INFO_FLAGS for arg in argv):
        return
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
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=fixed)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_first_line(err)) from None
    if check_values:
        validate(cfg)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    cause = err.__cause__ or err.__context__
    if cause is not None and str(cause).strip():
        text = f"{text} ({str(cause).strip().splitlines()[0]})"
    return text.splitlines()[0] if text else type(err).__name__ + ": see `--help`"
