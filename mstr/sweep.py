"""`python -m mstr.sweep SPEC.yaml [--n-trials N] [--storage URL] [overrides...]`: an Optuna search.

SPEC (see sweeps/*.yaml) names the metric to optimise (a validation metric: trials never score the
test sets), fixed overrides and the search space. With a database `storage` the study is shared by
every process that opens it (run the same command on several GPUs / machines) and resumes after an
interruption. Each trial is one ordinary training job with its own output dir and metrics.json.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from mstr.errors import ConfigError, MstrError, report_and_exit

log = logging.getLogger("mstr.sweep")
PARAM_TYPES = ("float", "int", "categorical")


def load_spec(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: no such sweep spec (see sweeps/*.yaml)")
    spec = yaml.safe_load(path.read_text()) or {}
    for key in ("study_name", "metric", "params"):
        if key not in spec:
            raise ConfigError(f"{path}: missing key {key!r}")
    if not spec["metric"].startswith("val/"):
        raise ConfigError(f"{path}: metric={spec['metric']!r}: optimise a validation metric (val/...), "
                          "never a test one")
    for name, p in spec["params"].items():
        if p.get("type") not in PARAM_TYPES:
            raise ConfigError(f"{path}: params.{name}.type={p.get('type')!r}: must be one of {list(PARAM_TYPES)}")
    return spec


def suggest(trial, name: str, p: dict):
    if p["type"] == "float":
        return trial.suggest_float(name, p["low"], p["high"], log=p.get("log", False))
    if p["type"] == "int":
        return trial.suggest_int(name, p["low"], p["high"], log=p.get("log", False))
    return trial.suggest_categorical(name, p["choices"])


def objective_for(spec: dict, extra: list[str], out_root: Path):
    from mstr.config import compose_config
    from mstr.jobs.train import run

    def objective(trial) -> float:
        sampled = {name: suggest(trial, name, p) for name, p in spec["params"].items()}
        overrides = [*spec.get("overrides", []), *extra, *(f"{k}={v}" for k, v in sampled.items()),
                     "test=false", f"paths.output_dir={out_root / spec['study_name'] / f'trial{trial.number:04d}'}"]
        metrics = run(compose_config("train", overrides))
        value = metrics.get(spec["metric"])
        if value is None:
            raise ConfigError(f"metric {spec['metric']!r} not in the run's metrics ({sorted(metrics)[:8]}...)")
        return float(value)

    return objective


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mstr.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--storage", help="e.g. sqlite:///outputs/sweeps/study.db; 'none' for in-memory")
    parser.add_argument("--out", type=Path, default=Path("outputs/sweeps"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every trial")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        spec = load_spec(args.spec)
        import optuna

        storage = args.storage if args.storage is not None else spec.get("storage")
        storage = None if storage in (None, "none") else storage
        if storage and storage.startswith("sqlite:///"):
            Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(study_name=spec["study_name"], storage=storage, load_if_exists=True,
                                    direction=spec.get("direction", "maximize"),
                                    sampler=optuna.samplers.TPESampler(seed=0))
        study.optimize(objective_for(spec, args.overrides, args.out), n_trials=args.n_trials or spec.get("n_trials", 20))
    except MstrError as err:
        report_and_exit(err)
    best = study.best_trial
    print(f"best {spec['metric']} = {best.value:.4f} (trial {best.number}): "
          + " ".join(f"{k}={v}" for k, v in best.params.items()))


if __name__ == "__main__":
    sys.exit(main())
