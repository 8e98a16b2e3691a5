"""`python -m mstr.sweep SPEC.yaml [--n-trials N] [--workers N] [--storage URL] [--out DIR] [overrides...]`:
an Optuna search, with options and Hydra overrides in any order.

SPEC (see sweeps/*.yaml) names the metric to optimise (a validation metric: trials never score the
test sets), fixed overrides, the search space and optionally the sampler and pruner (any of
`optuna.samplers` / `optuna.pruners` by class name, with its arguments). Each trial is one ordinary
training job with its own dir `<out>/<study>/trialNNNN` (composed config in `.hydra/config.yaml`,
`metrics.json`), so `python -m mstr.compare <out>/<study>` compares them.

The study lives in a database (SQLite `<out>/<study>.db` unless `--storage` or the spec names another
SQLAlchemy URL, e.g. PostgreSQL shared by several machines). `--workers N` starts N worker processes
on it (one per GPU when several are visible; on several machines, run the same command on each with
the same storage). `--n-trials` is the study's total: workers stop when that many trials have ended
(completed, pruned, or failed with an error: a failing trial is recorded as failed and the study goes
on). A killed sweep resumes with the same command: trials cut off by the kill stop sending heartbeats
(or never sent one), are marked failed and run again with the same parameters. A trial stopped by
SIGINT / SIGTERM saves its last checkpoint and is queued again: the same command continues it there.
Trials report the metric after every validation epoch, and the pruner stops hopeless ones
(`mstr.training.pruning`).

Exit status: 0 when the study holds a completed trial (or only pruned ones); 2 for bad input (a spec,
option, override or storage URL that cannot work, before any trial), and when no trial completed and
every failed trial failed on bad input (a ConfigError / DataError, e.g. a value out of range); 1 when
no trial completed and a trial crashed otherwise; 128 + N when stopped by signal N.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import yaml

from mstr.cli_args import ArgumentParser
from mstr.config import override_key
from mstr.errors import ConfigError, Interrupted, MstrError, one_line, report_and_exit, report_interrupt
from mstr.options import BEST_VAL_METRICS

log = logging.getLogger("mstr.sweep")
EXIT_STATUS = __doc__.split("\n\n")[-1].strip()
PARAM_TYPES = ("float", "int", "categorical")
PARAM_KEYS = {"float": ("type", "low", "high", "log"), "int": ("type", "low", "high", "log"),
              "categorical": ("type", "choices")}
SPEC_KEYS = ("study_name", "direction", "metric", "n_trials", "storage", "seed", "sampler", "pruner", "overrides",
             "params")
RESUME_DIR = "resume_dir"  # a rerun trial's user attribute: the dir of the interrupted trial it continues
PRUNED_FILE = "pruned.json"  # in a pruned trial's dir: when and at what value (mstr.compare shows it)
DEFAULT_PRUNER = {"name": "MedianPruner", "n_startup_trials": 4, "n_warmup_steps": 1}
# keys every trial sets itself, after the spec's and the command line's overrides
SET_BY_SWEEP = {"test": "a sweep's trials never score the test set (selection on validation only); score the "
                        "best trial once with python -m mstr.evaluate ckpt_path=<its dir>",
                "paths.output_dir": "each trial runs in its own dir under --out; give --out instead"}
FINAL_ONLY_METRICS = ("val/unseen_type_recall",)  # reported at the end of a run, not per epoch


class TrialFailed(Exception):
    """A trial's job raised: recorded as a failed trial (its error in the `error` user attribute)."""


class CauseLoggedAlready(logging.Filter):
    """Optuna logs a failed trial with the traceback of the `TrialFailed` it caught. mstr has logged the
    cause already (one line for bad input, its own traceback for a crash), so Optuna's line stays and
    its traceback goes. A trial stopped by SIGINT / SIGTERM (`Interrupted`, or `KeyboardInterrupt` where
    Ctrl-C came before its training) is no failure to explain:
    from then on Optuna's lines go (the traceback, "failed with value None"), and the sweep's last line
    says what was saved and how to resume. On the logger that writes them (`optuna.study._optimize`)."""

    LOGGER = "optuna.study._optimize"
    stopping = False  # an Interrupted went by: this process is on its way out

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (Interrupted, KeyboardInterrupt)):
            self.stopping = True
        if isinstance(error, TrialFailed):
            record.exc_info, record.exc_text = None, None
        return not self.stopping


def load_spec(path: Path) -> dict:
    from mstr.preflight import did_you_mean

    if not path.is_file():
        raise ConfigError(f"{path}: no such sweep spec (see sweeps/*.yaml)")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not a YAML sweep spec ({getattr(err, 'problem', None) or err}{where}); "
                          "see sweeps/*.yaml") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a sweep spec is a mapping of keys (study_name, metric, params, ...); see sweeps/*.yaml")
    for key in spec:  # a misspelt key (n_trail) would be ignored, and its default used without a word
        if key not in SPEC_KEYS:
            raise ConfigError(f"{path}: {key!r}: not a sweep spec key{did_you_mean(str(key), list(SPEC_KEYS))} "
                              f"(keys: {', '.join(SPEC_KEYS)})")
    for key in ("study_name", "metric", "params"):
        if key not in spec:
            raise ConfigError(f"{path}: missing key {key!r}")
    name = spec["study_name"]  # names <out>/<study> and <out>/<study>.db: a plain folder name inside --out
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or os.sep in name:
        raise ConfigError(f"{path}: study_name={name!r}: must be a name (text without '/'), e.g. distill_student; "
                          "--out chooses the folder")
    if not str(spec["metric"]).startswith("val/"):
        raise ConfigError(f"{path}: metric={spec['metric']!r}: optimise a validation metric (val/...), "
                          "never a test one")
    # what a run's metrics.json holds of validation (val/unseen_type_recall with data.val_unseen_types)
    metrics = [*(f"val/{name}_best" for name in BEST_VAL_METRICS), "val/unseen_type_recall"]
    if spec["metric"] not in metrics:
        close = difflib.get_close_matches(str(spec["metric"]), metrics, n=1)
        raise ConfigError(f"{path}: metric={spec['metric']!r}: not a validation metric a run reports; one of "
                          f"{metrics}" + (f"; did you mean {close[0]}?" if close else ""))
    if spec.get("direction", "maximize") not in ("maximize", "minimize"):
        raise ConfigError(f"{path}: direction={spec['direction']!r}: must be maximize or minimize")
    if not isinstance(spec["params"], dict):
        raise ConfigError(f"{path}: params: a mapping of config keys to ranges, e.g. "
                          "{model.optim.lr: {type: float, low: 1e-4, high: 1e-2, log: true}}")
    spec["overrides"] = spec.get("overrides") or []
    if not isinstance(spec["overrides"], list) or not all(isinstance(o, str) for o in spec["overrides"]):
        raise ConfigError(f"{path}: overrides={spec['overrides']!r}: must be a list of key=value strings, "
                          "e.g. [model=student, distill=logits]")  # a string would be read one character at a time
    for name, p in spec["params"].items():
        kind = p.get("type") if isinstance(p, dict) else None
        if kind not in PARAM_TYPES:
            raise ConfigError(f"{path}: params.{name}.type={kind!r}: must be one of {list(PARAM_TYPES)}")
        _check_param(path, name, p)
        try:
            distribution(p)
        except KeyError as err:
            raise ConfigError(f"{path}: params.{name}: missing key {err}") from None
        except (TypeError, ValueError) as err:  # e.g. low > high: every trial would fail
            raise ConfigError(f"{path}: params.{name}: {err}") from None
    for key, module in (("sampler", "samplers"), ("pruner", "pruners")):
        if not isinstance(spec.get(key) or {}, dict):
            raise ConfigError(f"{path}: {key}: a mapping with the class name and its arguments, e.g. {{name: TPESampler}}")
        name = (spec.get(key) or {}).get("name")
        if spec.get(key) and name is None:
            raise ConfigError(f"{path}: {key}: missing key 'name' (the class of optuna.{module})")
        if name is not None and not _is_optuna_class(module, name):
            raise ConfigError(f"{path}: {key}.name={name!r}: not a class of optuna.{module}")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{path}: seed={seed!r}: must be an integer >= 0")
    _check_optuna_arguments(path, spec)
    return spec


def _check_param(path: Path, name: str, p: dict) -> None:
    """One searched parameter's keys and values, as Optuna would misread them: a misspelt key (`lg: true`,
    or `step`, which the sweep does not pass on) was ignored, a range end YAML read as text (`1e-4`: no
    dot, so YAML 1.1 reads a string) failed as `low <= high`, and `choices: none` was searched letter by
    letter. An end written as such text is taken as the number it spells (in `p`)."""
    from mstr.preflight import did_you_mean

    keys = PARAM_KEYS[p["type"]]
    for key in p:
        if key not in keys:
            raise ConfigError(f"{path}: params.{name}.{key}: not a key of a {p['type']} parameter"
                              f"{did_you_mean(str(key), list(keys))} (keys: {', '.join(keys)})")
    if p["type"] == "categorical":
        if "choices" in p and not isinstance(p["choices"], list):
            raise ConfigError(f"{path}: params.{name}.choices={p['choices']!r}: must be a list, e.g. [none, sqrt]")
        return
    for end in ("low", "high"):
        value = p.get(end)
        if isinstance(value, str):
            try:
                value = p[end] = float(value)
            except ValueError:
                pass
        if p["type"] == "int" and isinstance(value, float) and value.is_integer():
            value = p[end] = int(value)
        number = (int,) if p["type"] == "int" else (int, float)
        if end in p and (isinstance(value, bool) or not isinstance(value, number)):
            raise ConfigError(f"{path}: params.{name}.{end}={p[end]!r}: must be "
                              f"{'an integer' if p['type'] == 'int' else 'a number'}")


def _check_optuna_arguments(path: Path, spec: dict) -> None:
    """Build the spec's sampler and pruner once, as the sweep will: an argument they do not take or a
    value they refuse fails here, before the study's database is created, not as a traceback after."""
    import optuna

    from mstr.training.pruning import optuna_object

    for key, module, options, seed in (("sampler", "samplers", _sampler(spec), {"seed": 0}),
                                       ("pruner", "pruners", _pruner(spec), {})):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna_object(module, options, **seed)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{path}: {key}: {one_line(err)}") from None


def distribution(p: dict):
    """The Optuna distribution of one searched parameter (what `suggest` draws from); Optuna's own
    ValueError for a range that cannot be drawn from."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p["type"] == "categorical":
        return CategoricalDistribution(p["choices"])
    kind = FloatDistribution if p["type"] == "float" else IntDistribution
    return kind(p["low"], p["high"], log=p.get("log", False))


def _is_optuna_class(module: str, name: str) -> bool:
    import optuna

    return isinstance(getattr(getattr(optuna, module), name, None), type)


def _pruner(spec: dict) -> dict:
    return dict(spec.get("pruner") or DEFAULT_PRUNER)


def _sampler(spec: dict) -> dict:
    return dict(spec.get("sampler") or {"name": "TPESampler"})


def suggest(trial, name: str, p: dict):
    if p["type"] == "float":
        return trial.suggest_float(name, p["low"], p["high"], log=p.get("log", False))
    if p["type"] == "int":
        return trial.suggest_int(name, p["low"], p["high"], log=p.get("log", False))
    return trial.suggest_categorical(name, p["choices"])


# ---- the study -----------------------------------------------------------------------------------
def storage_url(spec: dict, given: Optional[str], out: Path) -> Optional[str]:
    """The study's database URL; None for in memory (`--storage none`: one worker, nothing resumes)."""
    url = given if given is not None else spec.get("storage") or f"sqlite:///{out / spec['study_name']}.db"
    if url == "none":
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        make_url(url).get_dialect()  # an unknown scheme fails here, before anything is written
    except SQLAlchemyError as err:
        raise ConfigError(f"storage {url!r}: {str(err).splitlines()[0]}; give a SQLAlchemy URL "
                          "(e.g. sqlite:///study.db, postgresql://host/db) or 'none'") from None
    if url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///"):]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a file of that name, a folder it may not write in: not a traceback
            raise ConfigError(f"storage {url!r}: cannot create {folder} ({err.strerror or err}); give a writable "
                              "--out folder (or --storage URL)") from None
    return url


def open_study(spec: dict, url: Optional[str], heartbeat: int, lock_path: Path):
    """Create or load the study. With a database, running trials send heartbeats; a trial silent for
    3 heartbeats (its worker was killed) is marked failed and queued again with the same parameters.

    Opening a new database creates its schema, and two processes creating it at once break each other
    (a table "already exists"): sweeps started together on one study take turns under the study's lock."""
    import optuna
    from filelock import FileLock
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import SQLAlchemyError

    from mstr.training.pruning import STUDIES, optuna_object

    study = {"study_name": spec["study_name"], "direction": spec.get("direction", "maximize"),
             "pruner": optuna_object("pruners", _pruner(spec))}
    if url is None:  # trials find it in STUDIES to report to, as they find a database's study
        STUDIES[spec["study_name"]] = optuna.create_study(**study)
        return STUDIES[spec["study_name"]]
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since v2.8
        try:
            storage = RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
        except (ImportError, SQLAlchemyError) as err:  # no driver, no server, no such file
            raise ConfigError(f"storage {url!r}: cannot open it ({str(err).splitlines()[0]})") from None
        STUDIES[spec["study_name"]] = optuna.create_study(storage=storage, load_if_exists=True, **study)
        return STUDIES[spec["study_name"]]


def check_study(study, spec: dict, extra: list[str], out: Path, url: Optional[str]) -> None:
    """A study is resumed only with the settings it was started with (fixed overrides, searched
    parameters, metric), and the trial dirs under `<out>/<study>` are its own: a study whose settings
    differ, or an earlier study's trial dirs, are refused (one line), never mixed into the results."""
    import json

    settings = json.loads(json.dumps({"overrides": [*spec.get("overrides", []), *extra], "params": spec["params"],
                                      "metric": spec["metric"]}, default=str))
    # Optuna loads a stored study with the direction it was created with, whatever the spec says now:
    # a study started to maximize went on maximizing a spec that says minimize, without a word
    direction = spec.get("direction", "maximize")
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {spec['study_name']} in {url} was started with direction "
                          f"{study.direction.name.lower()}, not {direction}: give another --out (or --storage) "
                          "for a new study, or the same settings to resume it")
    started = study.user_attrs.get("settings")
    if started is None:
        study.set_user_attr("settings", settings)
    elif (now := _as_they_act(settings)) != (then := _as_they_act(started)):
        key = next(k for k in settings if now[k] != then.get(k))
        raise ConfigError(f"study {spec['study_name']} in {url} was started with {key} {started.get(key)}, not "
                          f"{settings[key]}: give another --out (or --storage) for a new study, or the same "
                          "settings to resume it")
    own = {Path(t.user_attrs["run_dir"]).name for t in study.get_trials(deepcopy=False) if "run_dir" in t.user_attrs}
    folder = out / spec["study_name"]
    stale = sorted(d.name for d in folder.glob("trial*") if d.is_dir() and d.name not in own)
    if stale:
        more = f" and {len(stale) - 1} more" if len(stale) > 1 else ""
        raise ConfigError(f"{folder / stale[0]}{more}: trial dirs of another study (not in "
                          f"{url or 'this in-memory study'}); give another --out, or move them away")


def _as_they_act(settings: dict) -> dict:
    """A study's settings as they shape its trials: overrides in any order (the README promises it),
    the last of one key counting, as in Hydra."""
    overrides = {override_key(o): o for o in settings.get("overrides", [])}
    return {**settings, "overrides": sorted(overrides.values())}


def seed_sampler(study, spec: dict, worker_index: int) -> None:
    """The spec's sampler, seeded apart for each worker and each resumption (the trials so far), so
    that no two draw the same first trials while a rerun of the same history draws the same."""
    from mstr.training.pruning import optuna_object

    seed = spec.get("seed", 0) + 1000 * worker_index + len(study.get_trials(deepcopy=False))
    study.sampler = optuna_object("samplers", _sampler(spec), seed=seed)


def counted(trials) -> int:
    """Trials that make up the study's total: ended (completed, pruned, failed with an error), running
    or queued. A trial failed by a kill (no error recorded) is not counted: its retry is."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return sum(t.state in live or (t.state == TrialState.FAIL and "error" in t.user_attrs) for t in trials)


# ---- one trial -----------------------------------------------------------------------------------
def trial_config(spec: dict, extra: list[str], trial, run_dir: Path, url: Optional[str], resume: bool = False):
    """The composed training config of a trial: spec overrides, command-line overrides, the sampled
    values, no test scoring, the trial's run dir (`resume`: continued from its last checkpoint), the
    study as W&B group, and the pruning callback."""
    from omegaconf import open_dict
    from sqlalchemy.engine import make_url

    from mstr.config import compose_config

    sampled = {name: suggest(trial, name, p) for name, p in spec["params"].items()}
    fixed = [*spec.get("overrides", []), *extra]
    # the study names the W&B group unless the spec or command line chose one (README: group=<name>)
    group = [] if any(override_key(o) == "group" for o in fixed) else [f"group={spec['study_name']}"]
    overrides = [*fixed, *(f"{k}={v}" for k, v in sampled.items()),
                 "test=false", f"paths.output_dir={run_dir}", *group, *(["resume=auto"] if resume else [])]
    cfg = compose_config("train", overrides)
    # the callback finds the study this process opened (pruning.STUDIES); the URL it names is only a record,
    # without the password a database URL may hold (the config is saved in the trial dir and logged to W&B)
    shown = None if url is None else make_url(url).render_as_string(hide_password=True)
    with open_dict(cfg):
        cfg.callbacks.optuna_pruning = {"_target_": "mstr.training.pruning.OptunaPruning", "storage": shown,
                                        "study_name": spec["study_name"], "trial_id": trial._trial_id,
                                        "monitor": spec["metric"], "pruner": _pruner(spec)}
    return cfg, overrides


def _trial_log(run_dir: Path) -> logging.Handler:
    """The process's log lines while a trial runs, also in `<trial dir>/train.log`."""
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def check_trials(spec: dict, extra: list[str]) -> None:
    """The overrides every trial shares and the searched keys (each end of a range, each choice), checked
    before any trial: unknown keys and bad values end the sweep with one line, exit 2."""
    from mstr.preflight import preflight

    fixed = [*spec.get("overrides", []), *extra]
    for override in fixed:  # a trial's sampled value comes after it, and Hydra keeps the last
        key = override_key(override)
        where = "the command line" if override in extra else "the spec's overrides"
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):  # composed, never launched: a no-op
            raise ConfigError(f"{override} ({where}): a sweep's trials are not Hydra jobs, so hydra settings "
                              "do nothing; --workers runs trials in parallel, --out chooses where they go")
        if key in spec["params"]:
            raise ConfigError(f"{override} ({where}): the spec searches {key} (params), so every trial "
                              "would replace this value with its own; drop it, or take the key out of params")
        if key in SET_BY_SWEEP and override.replace(" ", "") != "test=false":  # each trial's own value replaces it
            raise ConfigError(f"{override} ({where}): {SET_BY_SWEEP[key]}")
    values = {name: _values(p) for name, p in spec["params"].items()}
    first = {name: options[0] for name, options in values.items()}
    cfg = preflight([*fixed, *(f"{k}={v}" for k, v in first.items())], "train")
    checked = [cfg]
    for name, options in values.items():  # the others at their first value: one key changed at a time
        for value in options[1:]:
            checked.append(preflight([*fixed, *(f"{k}={value if k == name else v}" for k, v in first.items())], "train"))
    # a run reports val/unseen_type_recall only when validation holds unseen attack types: without them
    # every trial trained to the end, then failed for want of its metric
    if spec["metric"] == "val/unseen_type_recall" and not all(c.data.get("val_unseen_types") for c in checked):
        raise ConfigError("metric val/unseen_type_recall: runs report it only with data.val_unseen_types > 0; "
                          "add e.g. data.val_unseen_types=0.2 to the spec's overrides (data with attack types, "
                          "e.g. data=nsl_kdd)")
    if cfg.trainer.get("accelerator") in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():  # each trial would fail at once, and count toward the study's trials
            raise ConfigError(f"trainer.accelerator={cfg.trainer.accelerator}: this machine has no usable GPU, so "
                              "every trial would fail and still count toward --n-trials; run the sweep where the "
                              "GPUs are, or with trainer=cpu")
    if spec["metric"] in FINAL_ONLY_METRICS and _pruner(spec)["name"] != "NopPruner":
        log.warning("metric %s is computed once, after training: the pruner gets no value while a trial trains "
                    "and stops none (pruner: {name: NopPruner} says so)", spec["metric"])
    if cfg.trainer.get("strategy") not in (None, "auto") and cfg.trainer.get("devices") not in (1, [0]):
        raise ConfigError(f"trainer.strategy={cfg.trainer.get('strategy')} in a sweep: each trial runs in its "
                          "worker on one device; use --workers to run trials on several GPUs at once")


def _values(p: dict) -> list:
    """The values of a searched parameter that a check covers: each choice, or each end of the range, of
    the type a trial draws (a float range written `low: 4` draws 10.58, never 4: checked as 4.0)."""
    if p["type"] == "categorical":
        return list(p["choices"])
    kind = float if p["type"] == "float" else int
    return [kind(p["low"]), kind(p["high"])]


def objective_for(spec: dict, extra: list[str], out: Path, url: Optional[str]):
    from mstr.jobs.multirun import record_failure_in
    from mstr.jobs.train import run, save_run_config

    def objective(trial) -> float:
        import optuna

        resume_dir = trial.user_attrs.get(RESUME_DIR)  # the rerun of an interrupted trial: see rerun_later
        run_dir = Path(resume_dir) if resume_dir else out / spec["study_name"] / f"trial{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        log_file = None
        try:
            cfg, overrides = trial_config(spec, extra, trial, run_dir, url, resume=resume_dir is not None)
            save_run_config(cfg, run_dir)  # the layout of a Hydra run dir, before the run can fail
            (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            log_file = _trial_log(run_dir)  # train.log, as a Hydra run dir has
            metrics = run(cfg)
            if spec["metric"] not in metrics:
                raise ConfigError(f"metric {spec['metric']!r} not in the run's metrics ({sorted(metrics)[:8]}...)")
            return float(metrics[spec["metric"]])
        except (Interrupted, KeyboardInterrupt):  # the latter: Ctrl-C before its training began
            rerun_later(trial, run_dir)
            raise
        except optuna.TrialPruned as err:
            # pruned.json in the trial dir: without it compare listed a pruned trial as unfinished, like
            # one that was killed or is still running
            from mstr.jobs.report import write_json

            write_json(run_dir / PRUNED_FILE, {"pruned": str(err)})
            raise
        except Exception as err:  # a user error and a crash alike: the study goes on
            # job_error.json in the trial dir, as a multirun job writes it: compare lists the trial as failed
            shown, message = record_failure_in(run_dir, err)  # also a user error Hydra's instantiate wrapped
            bad_input = isinstance(shown, MstrError)
            trial.set_user_attr("error", f"{type(shown).__name__}: {message}"[:1000])
            trial.set_user_attr("bad_input", bad_input)  # see exit_code
            log.error("trial %d failed: %s", trial.number, message, exc_info=not bad_input)
            raise TrialFailed(message) from err
        finally:
            if log_file is not None:
                logging.getLogger().removeHandler(log_file)
                log_file.close()

    return objective


def rerun_later(trial, run_dir: Path) -> None:
    """Queue a trial that SIGINT / SIGTERM stopped again, with its parameters and the epochs it reported:
    the next run of the sweep's command continues it in its dir from the `last.ckpt` saved there (as
    `resume=auto` does), instead of drawing new parameters. Optuna marks the stopped trial failed, with
    no error: it does not count toward the study's total, its rerun does."""
    import optuna
    from optuna.trial import TrialState

    stopped = trial.study._storage.get_trial(trial._trial_id)
    trial.study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=stopped.params, distributions=stopped.distributions,
        intermediate_values=stopped.intermediate_values, user_attrs={RESUME_DIR: str(run_dir)},
        system_attrs={"failed_trial": stopped.system_attrs.get("failed_trial", stopped.number)}))  # the first one


def work(study, objective, n_trials: int, heartbeat: int, lock_path: Path) -> None:
    """Run trials until the study holds `n_trials` counted ones and none is running anywhere (a
    running trial may still turn out to be stale, and its retry must then run).

    Counting the trials and creating the next one happen under a file lock that every worker on the
    study takes (`<out>/<study>.lock`), so two workers never both take the last slot: the lock is let
    go as soon as the trial exists. Workers on other machines share it when `--out` is shared."""
    import optuna
    from filelock import FileLock
    from optuna.storages import fail_stale_trials
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    lock = FileLock(str(lock_path))

    def objective_unlocked(trial):
        if is_heartbeat_enabled(study._storage):  # a claimed trial has a heartbeat that can go stale
            study._storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr("worker", claim(trial.number))  # claimed: see fail_unclaimed_trials
        lock.release()  # the trial is in the study now: the next worker may count it
        return objective(trial)

    while True:
        lock.acquire()
        try:
            if is_heartbeat_enabled(study._storage):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since v2.9
                    fail_stale_trials(study)
                fail_unclaimed_trials(study, grace=3 * heartbeat)
            trials = study.get_trials(deepcopy=False)
            if any(t.state == TrialState.WAITING for t in trials) or counted(trials) < n_trials:
                study.optimize(objective_unlocked, n_trials=1, catch=(TrialFailed,))
                continue
            running = any(t.state == TrialState.RUNNING for t in trials)
        finally:
            if lock.is_locked:  # the trial never started, or none was due
                lock.release()
        if not (running and is_heartbeat_enabled(study._storage)):
            return
        time.sleep(heartbeat)


def claim(number: int) -> str:
    """A worker's mark on the trial it runs: its process and the trial's number. A retry carries its
    failed trial's attributes into a trial of another number, and that trial's mark must not count."""
    return f"{os.getpid()}@{number}"


def claimed(trial) -> bool:
    return str(trial.user_attrs.get("worker", "")).endswith(f"@{trial.number}")


def fail_unclaimed_trials(study, grace: float) -> None:
    """Fail, and queue again, the running trials that no worker claimed: a worker killed after Optuna
    created its trial but before the trial's first heartbeat leaves a trial that Optuna never finds
    stale (it has no heartbeat to be late), and the study would wait on it for ever.

    Called under the study's lock, which a worker holds from creating its trial until it has recorded
    a heartbeat and then claimed it (the `worker` attribute): an unclaimed trial is a dead one, and a
    claimed one is Optuna's to find stale. The grace period covers workers that do not share the lock."""
    from datetime import datetime, timedelta

    from optuna.trial import TrialState

    storage = study._storage
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        unclaimed = not claimed(trial)
        if unclaimed and datetime.now() - trial.datetime_start > timedelta(seconds=grace):
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL) and retry is not None:
                retry(study, storage.get_trial(trial._trial_id))


# ---- workers -------------------------------------------------------------------------------------
def start_workers(argv: list[str], workers: int) -> int:
    """Run `workers` copies of this command as one-worker processes sharing the study, one GPU each
    when several are visible; forward SIGINT / SIGTERM to them. Returns the worst exit code."""
    from mstr.training.distributed import visible_gpus

    gpus = visible_gpus()
    procs = []
    for index in range(workers):
        env = dict(os.environ)
        if len(gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        procs.append(subprocess.Popen([sys.executable, "-m", "mstr.sweep", *argv, "--workers", "1",
                                       "--worker-index", str(index)], env=env))
    log.info("%d workers on the study%s", workers, f", GPUs {gpus}" if len(gpus) > 1 else "")

    def forward(signum, frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [proc.wait() for proc in procs]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return max(codes, key=abs)


def summary(study, spec: dict) -> str:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState if any(t.state == s for t in trials)}
    line = f"study {spec['study_name']}: " + ", ".join(f"{n} {s}" for s, n in states.items())
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return line + "; no trial completed"
    best = study.best_trial
    # its dir: a rerun of an interrupted trial continues in that trial's dir, so the number alone
    # (trial 1) pointed at a trialNNNN dir that does not exist, or at another trial's
    where = f", {best.user_attrs['run_dir']}" if "run_dir" in best.user_attrs else ""
    return (line + f"; best {spec['metric']} = {best.value:.4f} (trial {best.number}{where}): "
            + " ".join(f"{k}={v}" for k, v in best.params.items()))


def exit_code(study) -> tuple[int, Optional[str]]:
    """(exit code, the line that explains it) of a study's outcome: 0 when a trial completed, or when
    none failed (every trial pruned is a result too); else 2 when every failed trial failed on bad
    input (a ConfigError / DataError: fix the spec or the overrides), 1 when one crashed."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL and "error" in t.user_attrs]
    if any(t.state == TrialState.COMPLETE for t in trials) or not failed:
        return 0, None
    code = 2 if all(t.user_attrs.get("bad_input") for t in failed) else 1
    return code, (f"study {study.study_name}: no trial completed; {len(failed)} failed, "
                  f"trial {failed[-1].number}: {failed[-1].user_attrs['error']}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = ArgumentParser(prog="python -m mstr.sweep", description=__doc__.split("\n\n")[0],
                            epilog=EXIT_STATUS)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--n-trials", type=int, help="the study's total (default: the spec's n_trials, else 20)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the study (one per GPU)")
    parser.add_argument("--storage", help="SQLAlchemy URL of the study (default sqlite:///<out>/<study>.db); "
                                          "'none': in memory")
    parser.add_argument("--out", type=Path, default=Path("outputs/sweeps"), help="trial dirs: <out>/<study>/trialNNNN")
    parser.add_argument("--heartbeat", type=int, default=10, help="seconds between a running trial's heartbeats")
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by start_workers
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every trial")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    logging.getLogger().setLevel(logging.INFO)  # also where a host set up logging first: trials log their runs
    url = ""  # the study's storage, once known (None: in memory, which no later command can resume)
    try:
        spec = load_spec(args.spec)
        n_trials = args.n_trials if args.n_trials is not None else spec.get("n_trials", 20)
        trials_from = "--n-trials" if args.n_trials is not None else f"{args.spec}: n_trials"
        for name, value in ((trials_from, n_trials), ("--workers", args.workers),
                            ("--heartbeat", args.heartbeat)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be an integer >= 1")
        check_trials(spec, args.overrides)
        url = storage_url(spec, args.storage, args.out)
        try:  # the trial dirs and the study's lock go there
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"--out {args.out}: cannot create it ({err.strerror or err}); give a writable folder") from None
        if url is None and args.workers > 1:
            raise ConfigError("--workers > 1 needs a database (--storage URL): workers share the study through it")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        failures = logging.getLogger(CauseLoggedAlready.LOGGER)
        for earlier in [f for f in failures.filters if isinstance(f, CauseLoggedAlready)]:
            failures.removeFilter(earlier)  # an earlier sweep's interrupt in this process silences none of this one
        failures.addFilter(CauseLoggedAlready())
        lock_path = args.out / f"{spec['study_name']}.lock"
        study = open_study(spec, url, args.heartbeat, lock_path)
        check_study(study, spec, args.overrides, args.out, url)
        if args.workers > 1:
            code = start_workers(_without(argv, "--workers"), args.workers)
        else:
            seed_sampler(study, spec, args.worker_index or 0)
            work(study, objective_for(spec, args.overrides, args.out, url), n_trials, args.heartbeat, lock_path)
            code = 0
    except MstrError as err:
        report_and_exit(err)
    except (Interrupted, KeyboardInterrupt) as err:  # KeyboardInterrupt: Ctrl-C outside a trial's training
        stop = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)
        report_interrupt(stop, shlex.join(["python", "-m", "mstr.sweep", *argv]) if url is not None else None)
    if args.worker_index is None:  # the command the user ran, not one of its workers
        print(summary(study, spec))
        outcome, line = exit_code(study)
        if line is not None:
            print(f"error: {line}", file=sys.stderr, flush=True)
        code = code or outcome
    return code


def _without(argv: list[str], option: str) -> list[str]:
    """argv less `option` and its value (`--opt V` or `--opt=V`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


if __name__ == "__main__":
    sys.exit(main())
