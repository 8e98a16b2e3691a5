"""Check the command line before Hydra starts a run: unknown keys, bad group names and bad values
fail here with one line and exit code 2, before any output dir, data read or training."""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from mstr.config import config_dir, group_options, validate
from mstr.errors import ConfigError

# Hydra's own flags: they print, or take a value, and run nothing we can check here.
_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                     "--experimental-rerun", "--package", "-p", "--cfg", "-c", "--info", "-i"}
_INFO_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc",
               "--cfg", "-c", "--info", "-i", "--resolve"}


_MAX_SWEEP_JOBS_CHECKED = 256


def preflight(argv: list[str], config_name: str, check_values: bool = True, sweep_hint: str = "give one value"):
    """Returns the composed config of the fixed overrides (None for info flags like --help). `sweep_hint`
    says what to do with several values for a key outside -m (only Hydra's command lines have -m)."""
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
    parsed = []
    try:
        parsed = _parse(overrides, config_name)
        # Sweeps are checked per job; here only the fixed overrides are composed.
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
        if sweeps and not multirun:
            raise ConfigError(f"{sweeps[0]}: several values are a sweep; {sweep_hint}")
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=fixed)
            jobs = _sweep_jobs(parsed) if sweeps and check_values else []
            job_cfgs = []
            for job in jobs:  # each job of a sweep, so a bad value fails before the first job starts
                try:
                    job_cfgs.append((job, compose(config_name=config_name, overrides=job)))
                except (HydraException, OmegaConfBaseException) as err:
                    raise ConfigError(f"sweep job {_swept(job, sweeps)}: {_one_line(err, config_name, parsed)}") from None
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_one_line(err, config_name, parsed)) from None
    if check_values:
        if not job_cfgs:  # a sweep's fixed overrides alone are no job: `-m distill=features,combined
            validate(cfg)  # distill.feature_weight=2` is refused by none of its jobs, only by the default method
        for job, job_cfg in job_cfgs:
            try:
                validate(job_cfg)
            except ConfigError as err:
                raise ConfigError(f"sweep job {_swept(job, sweeps)}: {err}") from None
    return cfg


def check_writable(key: str, folder) -> None:
    """A folder the job makes (if missing) and writes into: one line naming `key` when that cannot be done,
    before any work, instead of a traceback when the job first writes there. Nothing is left behind."""
    folder = Path(str(folder)).absolute()
    where = folder
    try:
        where = next(p for p in (folder, *folder.parents) if p.exists())  # where the job makes its first entry
        os.rmdir(tempfile.mkdtemp(dir=where))
    except OSError as err:
        raise ConfigError(f"{key}={folder}: cannot write into {where} ({err.strerror}); give a folder you can "
                          "write to") from None


def _parse(overrides: list[str], config_name: str) -> list:
    """The parsed overrides; one that is not valid override syntax is named in a one-line error."""
    parser = OverridesParser.create()
    for line in overrides:
        if "=" not in line and not line.startswith("~"):
            hint = f"; a checkpoint or run dir is given as ckpt_path={line}" if config_name in ("evaluate", "export") else ""
            raise ConfigError(f"{line}: not an override (key=value){hint}")
        try:
            parser.parse_override(line)
        except HydraException as err:
            key, _, value = line.partition("=")
            # Hydra's grammar takes letters outside ASCII (a label 'Bénin', a folder 'données') only quoted
            hint = f"quote the value: '{key}=\"{value}\"'" if not value.isascii() else "see `--help` for the override syntax"
            raise ConfigError(f"{line}: {str(err).splitlines()[0]}; {hint}") from None
    parsed = parser.parse_overrides(overrides)
    entry = _entry_keys(config_name)
    for override in parsed:
        # a setting of the entry config itself (seed, test, ...) is read by the job, with no default to fall
        # back on: deleting it ended in a traceback inside the job
        if override.is_delete() and override.key_or_group in entry:
            raise ConfigError(f"{override.input_line}: {override.key_or_group} is a setting the job reads, not one "
                              f"to delete; give it a value ({override.key_or_group}=...)")
        # Hydra's answer to `debug=null` is a ValueError traceback
        options = group_options(override.key_or_group)
        if override.value() is None and not override.is_delete() and options:
            raise ConfigError(f"{override.input_line}: a config group takes one of its options: {', '.join(options)}; "
                              f"leave {override.key_or_group}= out for its default")
    return parsed


def _entry_keys(config_name: str) -> set[str]:
    """The settings the entry config (`configs/<config_name>.yaml`) holds itself, its groups left out."""
    from omegaconf import OmegaConf

    path = Path(config_dir()) / f"{config_name}.yaml"
    own = OmegaConf.load(path) if path.is_file() else {}
    return {str(key) for key in own if key != "defaults" and not group_options(str(key))}


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


def _one_line(err: Exception, config_name: str, parsed=()) -> str:
    """Hydra's error as one line that keeps what tells the user what to type: a group's options (and
    the closest one) for an unknown choice, the closest key for an unknown key."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__ + ": see `--help`"
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'", first)
    listed = re.search(r"Available options in '[^']+':\n((?:\t.*\n?)+)", text)
    if missing and listed:
        options = [line.strip() for line in listed.group(1).splitlines()
                   if line.strip() and not line.strip().startswith("_")]  # _name: a base the others extend
        group, name = missing.groups()
        return f"{group}={name}: no such config; options: {', '.join(options)}{did_you_mean(name, options)}"
    cause = err.__cause__ or err.__context__
    unknown = re.search(r"Key '([^']+)' is not in struct\s+full_key: (\S+)", str(cause or ""))
    overridden = re.match(r"Could not override '([^']+)'", first)
    if unknown and overridden:
        key, (leaf, full_key) = overridden.group(1), unknown.groups()
        parent = full_key.rpartition(".")[0]  # the first part of the key that the config lacks
        candidates = _keys_at(parent, config_name, [o for o in parsed if o.key_or_group != key])
        return (f"{key}: no such key{did_you_mean(leaf, candidates, parent)} "
                f"(a new key is added with +{key}=...)")
    no_group = re.match(r"Could not override '([^'.]+)'\. No match in the defaults list", first)
    if no_group:  # a group this entry point does not compose (evaluate's model=: the checkpoint says)
        group = no_group.group(1)
        return (f"{group}=...: python -m mstr.{config_name} has no {group} setting (a checkpoint carries its own "
                f"model and training settings); see its --help for what it takes")
    if cause is not None and str(cause).strip() and str(cause).strip().splitlines()[0] != first:
        first = f"{first} ({str(cause).strip().splitlines()[0]})"
    return first


def _keys_at(parent: str, config_name: str, parsed) -> list[str]:
    """The keys under `parent` in the config as the command line's group choices compose it."""
    from omegaconf import DictConfig, OmegaConf

    groups = [o.input_line for o in parsed if not o.is_sweep_override() and "." not in o.key_or_group
              and not o.input_line.startswith(("+", "~")) and isinstance(o.value(), str)]
    try:
        if GlobalHydra.instance().is_initialized():  # a sweep job's error: inside preflight's own context
            node = compose(config_name=config_name, overrides=groups)
        else:
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                node = compose(config_name=config_name, overrides=groups)
        node = OmegaConf.select(node, parent) if parent else node
    except (HydraException, OmegaConfBaseException):
        return []
    return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []


def did_you_mean(name: str, candidates: list[str], parent: str = "") -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {parent + '.' if parent else ''}{close[0]}?" if close else ""
