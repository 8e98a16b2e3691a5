"""`python -m mstr.baselines [data=...] [baselines.models=[...]]`: the classic models a detector is
compared against, on exactly the splits and preprocessing the networks get.

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

Example:
    python -m mstr.baselines data=nsl_kdd 'baselines.models=[majority,stump,lightgbm]'
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from mstr.cli import hydra_entry
from mstr.config import register_resolvers
from mstr.errors import ConfigError
from mstr.peers import MODELS, fit_on, peer_probabilities

log = logging.getLogger("mstr.baselines")
register_resolvers()


def _check(models: Sequence[str]) -> None:
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ConfigError(f"baselines.models={list(models)}: choose from {list(MODELS)}")


def run_baselines(dm, models: Sequence[str] = MODELS, seed: int = 0,
                  n_jobs: int = 2) -> dict[str, dict[str, float]]:
    """Fit each model on `dm`'s train split (set up) and score it on its test sets.

    n_jobs: threads of the forest and the boosters; more than the free cores makes the boosters'
    OpenMP threads wait on each other (on a busy 2-core box LightGBM ran 50x slower).

    Returns {model: {"test/f1": ..., "test_<name>/f1": ... (several test sets), "time/fit_s": ...}}.
    """
    from mstr.training.evaluation import score_sets

    _check(models)
    tests = {name: dm.flows(f"test_{name}") for name in dm.test_names}
    results = {}
    for name in models:
        model, fit_s = fit_on(name, dm, seed, n_jobs)
        if name == "stump":
            log.info("stump splits on %s", dm.preprocessor.feature_names[model.tree_.feature[0]]
                     if model.tree_.node_count > 1 else "nothing (one class)")
        scored = {t: (peer_probabilities(model, xt, dm.num_classes), torch.from_numpy(yt))
                  for t, (xt, yt) in tests.items()}
        results[name] = {**score_sets(scored, dm.num_classes, subsets=dm.test_subsets()), "time/fit_s": fit_s}
        log.info("%s: test/f1 %.4f (fit %.1f s)", name, results[name]["test/f1"], fit_s)
    return results


def _print_comparison(results: dict[str, dict[str, float]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from mstr.training.metrics import METRIC_NAMES

    table = Table(title=title)
    table.add_column("model")
    for metric in METRIC_NAMES:
        table.add_column(metric, justify="right")
    table.add_column("fit s", justify="right")
    for model, values in results.items():
        table.add_row(model, *(f"{values[f'test/{m}']:.4f}" for m in METRIC_NAMES), f"{values['time/fit_s']:.1f}")
    Console(width=max(Console().width, 110)).print(table)  # piped output defaults to 80 columns


def run(cfg: DictConfig) -> dict:
    """Everything one `mstr.baselines` job does; returns the flat metrics (also in `metrics.json`)."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mstr.outputs import write_json

    models = list(cfg.baselines.models)
    _check(models)  # before reading any data
    out_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = instantiate(cfg.data)
    dm.setup()
    results = run_baselines(dm, models, int(cfg.seed), int(cfg.baselines.n_jobs))
    metrics = {f"{model}/{k}": v for model, values in results.items() for k, v in values.items()}
    metrics.update(dm.facts)
    metrics.update({f"audit/{k}": v for k, v in dm.audit.items()})
    write_json(out_dir / "metrics.json", metrics)
    _print_comparison(results, f"baselines on {cfg.data.name} (test) -> {out_dir / 'metrics.json'}")
    return metrics


main = hydra_entry("baselines", run)


if __name__ == "__main__":
    main()
