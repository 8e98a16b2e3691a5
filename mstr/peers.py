"""The classic models a detector is compared against (and the tree ensembles a student can learn
from): one factory, one fit with early stopping on validation (never on test), probabilities in the
project's class order, and `run_peers`, which scores them on a DataModule's own splits. Plain
scikit-learn / LightGBM / XGBoost; no Lightning, no Hydra."""

from __future__ import annotations

import inspect
import logging
import time
from typing import Sequence

import numpy as np
import torch

from mstr.errors import ConfigError
from mstr.options import PEERS

log = logging.getLogger("mstr.peers")

EARLY_STOPPING_ROUNDS = 50


def make_peer(name: str, seed: int, n_jobs: int):
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    if name == "majority":
        return DummyClassifier(strategy="prior")
    if name == "stump":
        return DecisionTreeClassifier(max_depth=1, random_state=seed)
    if name == "logreg":
        return LogisticRegression(max_iter=1000)
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=100, n_jobs=n_jobs, random_state=seed)
    if name == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_estimators=1000, learning_rate=0.05, num_leaves=31, n_jobs=n_jobs,
                              random_state=seed, verbose=-1)
    from xgboost import XGBClassifier

    return XGBClassifier(n_estimators=1000, learning_rate=0.1, max_depth=6, tree_method="hist",
                         n_jobs=n_jobs, random_state=seed, early_stopping_rounds=EARLY_STOPPING_ROUNDS)


def fit_peer(name: str, model, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> None:
    if name == "lightgbm":
        from lightgbm import early_stopping

        # Newer LightGBM (4.7 here) deprecates `eval_set` in favour of eval_X / eval_y.
        new_api = "eval_X" in inspect.signature(model.fit).parameters
        evals = {"eval_X": (x_val,), "eval_y": (y_val,)} if new_api else {"eval_set": [(x_val, y_val)]}
        model.fit(x, y, callbacks=[early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)], **evals)
    elif name == "xgboost":
        model.fit(x, y, eval_set=[(x_val, y_val)], verbose=False)
    else:
        model.fit(x, y)


def peer_probabilities(model, x: np.ndarray, num_classes: int) -> torch.Tensor:
    """[N, num_classes] probabilities, columns placed by the model's own class order."""
    out = np.zeros((len(x), num_classes), dtype=np.float32)
    out[:, np.asarray(model.classes_, dtype=int)] = model.predict_proba(x)
    return torch.from_numpy(out)


def fit_on(name: str, dm, seed: int = 0, n_jobs: int = 2):
    """(peer fitted on a set-up DataModule's training flows, early stopping on its validation flows;
    seconds the fit took)."""
    model = make_peer(name, seed, n_jobs)
    x, y = dm.flows("train")
    x_val, y_val = dm.flows("val")
    start = time.perf_counter()
    fit_peer(name, model, x, y, x_val, y_val)
    return model, time.perf_counter() - start


def check_peers(models: Sequence[str]) -> None:
    from mstr.preflight import did_you_mean

    if not models:
        raise ConfigError(f"baselines.models=[]: name at least one; choose from {list(PEERS)}")
    unknown = [m for m in models if m not in PEERS]
    if unknown:
        raise ConfigError(f"baselines.models={list(models)}: no model {unknown[0]!r}; choose from {list(PEERS)}"
                          f"{did_you_mean(unknown[0], list(PEERS))}")


def run_peers(dm, models: Sequence[str] = PEERS, seed: int = 0, n_jobs: int = 2) -> dict[str, dict[str, float]]:
    """Fit each model on the train split of `dm` (a set-up `FlowDataModule`: one row per flow, the
    window-1 view) and score it on its test sets with the networks' metrics.

    n_jobs: threads of the forest and the boosters; more than the free cores makes the boosters'
    OpenMP threads wait on each other (on a busy 2-core box LightGBM ran 50x slower).

    Returns {model: {"test/f1": ..., "test_<name>/f1": ... (several test sets), "time/fit_s": ...}}.
    """
    from mstr.training.evaluation import score_sets

    check_peers(models)
    tests = {name: dm.flows(f"test_{name}") for name in dm.test_names}
    results = {}
    for name in models:
        model, fit_s = fit_on(name, dm, seed, n_jobs)
        if name == "stump":
            log.info("stump splits on %s", dm.preprocessor.feature_names[model.tree_.feature[0]]
                     if model.tree_.node_count > 1 else "nothing (one class)")
        scored = {t: (peer_probabilities(model, xt, dm.num_classes), torch.from_numpy(yt))
                  for t, (xt, yt) in tests.items()}
        results[name] = {**score_sets(scored, dm.num_classes, subsets=dm.test_subsets(),
                                      benign_classes=dm.preprocessor.benign_classes), "time/fit_s": fit_s}
        log.info("%s: test/acc %.4f (fit %.1f s)", name, results[name]["test/acc"], fit_s)
    return results
