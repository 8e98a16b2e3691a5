"""`python -m mstr.baselines [data=... | run=<training run dir>] [baselines.models=[...]]`: the classic
models a detector is compared against, on exactly the splits and preprocessing the networks get
(`run=`: those of that run, its data config and seed).

Each model sees the features of one flow: row i of a split is the newest flow of window i, so this
is the window-1 view of the same `FlowDataModule` (train / val / test, preprocessing fit on train).
Metrics are the same torchmetrics on probabilities as training (`<model>/test/f1`, ...), so numbers
are comparable with `metrics.json` of a trained model. Boosters stop early on validation, never on
test. Models:
    majority       predicts the most frequent class (scores = class priors): the floor
    stump          the best single split of one feature (a depth-1 decision tree)
    logreg         logistic regression
    random_forest  100 trees
    lightgbm       gradient boosting, early stopping on validation
    xgboost        gradient boosting (hist), early stopping on validation

Examples:
    python -m mstr.baselines data=nsl_kdd 'baselines.models=[majority,stump,lightgbm]'
    python -m mstr.baselines run=outputs/train/runs/<run>   # beside a run of experiment=nsl_kdd
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from mstr.cli import hydra_entry
from mstr.config import override_key, register_resolvers
from mstr.errors import ConfigError

log = logging.getLogger("mstr.baselines")
register_resolvers()


def _print_comparison(results: dict[str, dict[str, float]], title: str, path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from mstr.options import METRIC_NAMES

    # multi-class metrics are macro averages, whose FPR says little of the share of benign flows flagged:
    # the alerts a detector of each model would raise (attack vs benign) are shown beside them
    alerts = [m for m in ("fpr", "recall") if any(f"test/alerts/{m}" in v for v in results.values())]
    columns = [*(f"test/{m}" for m in METRIC_NAMES), *(f"test/alerts/{m}" for m in alerts)]
    table = Table(title=title + (" (macro averages; alerts: attack vs benign)" if alerts else ""))
    table.add_column("model")
    for metric in (*METRIC_NAMES, *(f"alerts {m}" for m in alerts)):
        table.add_column(metric, justify="right")
    table.add_column("fit s", justify="right")
    for model, values in results.items():
        # a metric the test set cannot define (specificity on attacks alone, ...) is left out: shown as -
        cells = (f"{values[key]:.4f}" if key in values else "-" for key in columns)
        table.add_row(model, *cells, f"{values['time/fit_s']:.1f}")
    # piped output defaults to 80 columns, where names are cut
    Console(width=max(Console().width, 110 + 24 * len(alerts))).print(table)
    print(f"-> {path}", flush=True)  # whole, on its own line: to copy or grep


def checked(cfg: DictConfig) -> tuple[list[str], int]:
    """(models, n_jobs) of `cfg.baselines`, or a ConfigError naming the key: before any work. A single
    name (`baselines.models=majority`) is a list of one."""
    from mstr.peers import check_peers

    models = cfg.baselines.models
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, (list, ListConfig)):
        raise ConfigError(f"baselines.models={models!r}: give a list of names, e.g. baselines.models=[majority,lightgbm]")
    models = [str(m) for m in models]
    check_peers(models)
    run = cfg.get("run")
    if run and not (Path(str(run)) / ".hydra" / "config.yaml").is_file():
        raise ConfigError(f"run={run}: not a training run dir (no .hydra/config.yaml in it); give "
                          "run=outputs/train/runs/<run>, or data=<name> without run=")
    if run:  # an evaluate or baselines job's dir has a config too, without a data config and seed to read
        from mstr.training.export import run_config

        trained_with = run_config(run)
        data = trained_with.get("data") if trained_with is not None else None
        if not (isinstance(data, DictConfig) and "_target_" in data and isinstance(trained_with.get("seed"), int)):
            raise ConfigError(f"run={run}: its .hydra/config.yaml holds no training run's data config and seed "
                              "(an evaluate or baselines job's?); give run=outputs/train/runs/<run>, or data=<name> "
                              "without run=")
    seed = cfg.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r}: must be an integer >= 0")
    n_jobs = cfg.baselines.n_jobs
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise ConfigError(f"baselines.n_jobs={n_jobs!r}: give the threads of the forest and the boosters, "
                          "a nonzero integer (-1: all cores)")
    return models, n_jobs


def _check_command_line(argv: list[str], cfg) -> list[str]:
    if cfg is not None:  # None for --help and the like; a sweep's jobs are checked again in `run`
        checked(cfg)
        keys = [override_key(arg) for arg in argv]
        overridden = [k for k in keys if k in ("seed", "data") or k.startswith("data.")]
        if cfg.get("run") and overridden:
            # the run's own data config and seed are read in its place: the value given would be ignored
            raise ConfigError(f"{overridden[0]} with run=: the peers take the run's own data config and seed; "
                              f"leave {overridden[0]} out, or give data=<name> (and seed) without run=")
    return argv


def _record_data(cfg: DictConfig, data_cfg: DictConfig, seed: int, out_dir: Path) -> None:
    """This job's `.hydra/config.yaml` with the data config and seed of the run it took them from. Hydra
    wrote the job's own there, the default `data=synthetic`: the dir, and `mstr.compare` reading it, named
    data the peers never saw."""
    from omegaconf import OmegaConf, open_dict

    recorded = cfg.copy()
    with open_dict(recorded):
        recorded.data, recorded.seed = data_cfg, seed
    path = out_dir / ".hydra" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(recorded, path)


def run(cfg: DictConfig) -> dict:
    """Everything one `mstr.baselines` job does; returns the flat metrics (also in `metrics.json`)."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mstr.jobs.report import write_json
    from mstr.peers import run_peers

    models, n_jobs = checked(cfg)  # before reading any data
    out_dir = Path(cfg.paths.output_dir)
    data_cfg, seed = cfg.data, int(cfg.seed)
    if cfg.get("run"):  # the data config and seed of a training run: its splits and preprocessing
        from mstr.jobs.multirun import given_on_command_line
        from mstr.training.export import trained_on

        trained_with = trained_on(cfg.run, cfg.paths.data_dir, data_dir_given=given_on_command_line("paths.data_dir"))
        data_cfg, seed = trained_with.data, int(trained_with.seed)
        log.info("data: %s with seed %d, as the run %s read it", data_cfg.name, seed, cfg.run)
        _record_data(cfg, data_cfg, seed, out_dir)
    pl.seed_everything(seed, workers=True, verbose=False)
    dm = instantiate(data_cfg)
    dm.setup()
    results = run_peers(dm, models, seed, n_jobs)
    metrics = {f"{model}/{k}": v for model, values in results.items() for k, v in values.items()}
    metrics.update(dm.facts)
    metrics.update({f"audit/{k}": v for k, v in dm.audit.items()})
    write_json(out_dir / "metrics.json", metrics)
    _print_comparison(results, f"baselines on {data_cfg.name} (test)", out_dir / "metrics.json")
    return metrics


main = hydra_entry("baselines", run, prepare=_check_command_line)  # bad values: nothing written


if __name__ == "__main__":
    main()
