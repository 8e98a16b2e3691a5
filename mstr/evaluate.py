"""`python -m mstr.evaluate ckpt_path=PATH [data=...] [threshold=tune]`: score a checkpoint on the data
its run was trained on (`<run>/.hydra/config.yaml`), or on a data config it is compatible with (same
features, classes and window; checked before scoring).

The data goes through the checkpoint's own fitted preprocessing, not a new fit. Written to the run
dir: `metrics.json` (training's names: `test/f1`, ..., `test_<name>/...` per test set, `val/...`),
`per_class.csv` / `per_class.md` (precision, recall, F1, support per class) and PNG plots
(confusion matrix, ROC, precision-recall; one set per test set when there are several).

`threshold=tune` (binary only) picks the attack-score threshold with the best F1 on the VALIDATION
split and reports test metrics at it as `tuned/test/...` beside the default 0.5 ones; the test
split is never used to choose anything. Validation is the same carve as in training: the seed comes
from the checkpoint, and a validation split that is not the training run's (rows the model may have
trained on) is refused for tuning.

Examples:
    python -m mstr.evaluate ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt
    python -m mstr.evaluate ckpt_path=<run> 'data.test_files=[KDDTest+,KDDTest-21]'   # more test sets of its own data
    python -m mstr.evaluate ckpt_path=<run> data=nsl_kdd 'data.test_files=[KDDTest+]'  # another data config
    python -m mstr.evaluate ckpt_path=best.ckpt threshold=tune
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from mstr.cli import hydra_entry
from mstr.config import override_key, register_resolvers
from mstr.errors import ConfigError, DataError
from mstr.jobs.rundir import given_checkpoint

log = logging.getLogger("mstr.evaluate")
register_resolvers()
THRESHOLDS = ("default", "tune")


def run(cfg: DictConfig) -> dict:
    """Score `cfg.ckpt_path` on `cfg.data` (null: its run's own); returns the metrics (also in `metrics.json`)."""
    ckpt = given_checkpoint(cfg.get("ckpt_path"))
    if cfg.threshold not in THRESHOLDS:
        raise ConfigError(f"threshold={cfg.threshold!r}: must be one of {list(THRESHOLDS)}")
    seed = cfg.get("seed")  # checked here: the validation carve fails on it with a numpy traceback
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError(f"seed={seed!r}: must be an integer >= 0, or leave it out (the checkpoint's own)")
    try:
        device = torch.device(str(cfg.device))
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={cfg.device}: use device=cpu or device=cuda (cuda:N: GPU N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={cfg.device}: no CUDA GPU is visible; use device=cpu")
    from hydra.utils import instantiate

    from mstr.class_report import write_reports
    from mstr.data.preprocessing import FlowPreprocessor
    from mstr.jobs.report import print_table, write_json
    from mstr.scoring import at_threshold, tune_threshold
    from mstr.training.checkpoint import load_classifier
    from mstr.training.evaluation import predict, score, score_sets
    from mstr.training.export import run_config
    from mstr.training.signature import check_signature

    out_dir = Path(cfg.paths.output_dir)
    model = load_classifier(ckpt).to(device)
    hp = model.hparams
    if not hp.get("preprocessor"):
        raise DataError(f"{ckpt}: holds no fitted preprocessing; retrain it with this mstr")
    prep = FlowPreprocessor.from_dict(hp["preprocessor"])
    classes = prep.classes
    if cfg.threshold == "tune" and len(classes) != 2:
        raise ConfigError(f"threshold=tune needs a binary checkpoint; this one has classes {classes}")
    trained_on = hp.get("data_signature") or {}
    if cfg.seed is None:
        cfg.seed = int(trained_on.get("seed", 0))
    # the checkpoint's own preprocessing makes the features (a fresh fit would scale by this data's
    # statistics and may one-hot another category set); the DataModule checks that the classes agree
    data_cfg = cfg.data if cfg.get("data") is not None and "_target_" in cfg.data else training_data(ckpt, cfg)
    dm = instantiate(data_cfg, _partial_=True)(preprocessor=prep)
    try:
        dm.setup()
    except DataError as err:  # most often: another data config than the checkpoint's
        trained_with = run_config(ckpt)
        name = trained_with.data.get("name") if trained_with is not None else None
        if name is None or name == data_cfg.get("name"):
            raise
        raise DataError(f"{err}; {ckpt} was trained with data={name}: leave data= out to score on its "
                        f"own data, or add data={name}") from None
    check_signature(ckpt, trained_on, dm.signature(), keys=("window",))
    same_rows = trained_on.get("dev_rows") == dm.dev_rows
    if cfg.threshold == "tune" and not (trained_on.get("dev_rows") and trained_on.get("val_rows")):
        # an older mstr recorded neither: the checks below would blame a data config or seed override
        raise ConfigError(f"threshold=tune: {ckpt} does not record which rows it trained and was validated on "
                          "(written by an older mstr), so tuning cannot be kept off rows it trained on; retrain "
                          "it, or use a fixed threshold")
    if cfg.threshold == "tune" and not same_rows:
        # without data=<name>, the rows changed through data.* overrides of the run's own config: name them
        changed = [] if "_target_" in (cfg.get("data") or {}) else _leaf_keys(cfg.get("data") or {}, "data.")
        fix = (f"drop {', '.join(changed)}" if changed else
               "leave data= out (the training run's own data config)")
        raise ConfigError(f"threshold=tune: {data_cfg.name}'s train + validation rows are not the ones {ckpt} "
                          f"learnt from, so its validation split may hold rows the model trained on; {fix} "
                          "or use a fixed threshold")
    if cfg.threshold == "tune" and trained_on.get("val_rows") != dm.val_rows:
        # same train + validation rows cut elsewhere: another seed, or a data.* override of the carve
        # (data.val_fraction); only name the seed when it is the one that differs
        cause = (f"seed={cfg.seed} carves" if cfg.seed != trained_on.get("seed", cfg.seed)
                 else f"data.val_fraction={data_cfg.get('val_fraction')} (or another data.* override) carves")
        raise ConfigError(f"threshold=tune: {cause} another validation split than the training run's (seed "
                          f"{trained_on.get('seed')}), holding rows the model trained on; drop the override that "
                          "changes it, or use a fixed threshold")

    tests = {name: predict(model, loader) for name, loader in dm.test_loaders().items()}
    val = predict(model, dm.val_dataloader())
    metrics: dict = {"checkpoint": str(ckpt), "model/role": str(hp.get("role", "model"))}
    metrics.update(score_sets(tests, len(classes), subsets=dm.test_subsets(),
                               benign_classes=dm.preprocessor.benign_classes))
    metrics.update(score(*val, len(classes), "val/"))
    decisions = {"0.5": tests}
    if cfg.threshold == "tune":
        try:
            threshold, val_f1 = tune_threshold(val[0][:, 1].numpy(), val[1].numpy())
        except ValueError as err:
            raise DataError(f"{dm.tables['val'].source}: {err}") from None
        tuned = {name: (at_threshold(p, threshold), y) for name, (p, y) in tests.items()}
        metrics.update({f"tuned/{k}": v for k, v in score_sets(tuned, len(classes), subsets=dm.test_subsets()).items()})
        metrics.update({"tuned/threshold": threshold, "tuned/val_f1": val_f1})
        decisions[f"{threshold:.4f}"] = tuned
        log.info("threshold %.4f maximises F1 on validation (%.4f)", threshold, val_f1)
    # the leakage audit of these splits, plus whether the checkpoint learnt from exactly their
    # train + validation rows (else its test rows may not be unseen by it)
    metrics.update(dm.facts)
    metrics.update({f"audit/{k}": v for k, v in dm.audit.items()})
    metrics["audit/checkpoint_dev_rows_match"] = same_rows
    if not same_rows:
        log.warning("%s was trained on other rows than this data config's train + validation split: it may "
                    "have seen some of these test rows (see audit/dup_train_* for exact duplicates)", ckpt)
    elif trained_on.get("val_rows") != dm.val_rows:  # same rows, cut elsewhere (seed=, data.val_fraction=)
        log.warning("this validation split is not the training run's (another seed or data.val_fraction): it holds "
                    "rows %s trained on, so its val/... metrics overstate the model", ckpt)
    metrics["audit/checkpoint_val_rows_match"] = trained_on.get("val_rows") == dm.val_rows
    report = write_reports(decisions, classes, out_dir)
    write_json(out_dir / "metrics.json", metrics)
    print_table(metrics, f"{Path(str(ckpt)).name} on {data_cfg.name}", out_dir / "metrics.json")
    print(report)
    return metrics


def training_data(ckpt, cfg: DictConfig) -> DictConfig:
    """The data config of the checkpoint's own run (`<run>/.hydra/config.yaml`), read where the run read
    it (or from this command's `paths.data_dir` where that is gone, or where it is given) and carved with this command's seed
    (the checkpoint's unless given)."""
    from mstr.jobs.multirun import given_on_command_line
    from mstr.training.export import trained_on

    trained_with = trained_on(ckpt, cfg.paths.data_dir, cfg.seed, given_on_command_line("paths.data_dir"))
    if trained_with is None:
        raise ConfigError(f"{ckpt}: no run config beside it (<run>/.hydra/config.yaml) says what data it was "
                          "trained on; give the data to score on: data=<name>, e.g. data=nsl_kdd")
    data = trained_with.data
    log.info("data: %s, as the checkpoint's run read it (data=<name> scores on another)", data.name)
    changes = cfg.get("data")  # data.* overrides without data=<name> (`own_data_overrides`)
    if not changes:
        return data
    OmegaConf.set_struct(trained_with, True)  # a change names a key the run's data config has
    try:  # merged at the root, where the data config's interpolations (${data.test_files}) point
        return OmegaConf.merge(trained_with, {"data": changes}).data
    except ConfigKeyError as err:
        from mstr.preflight import did_you_mean

        parent, _, leaf = f"data.{str(err.full_key or err.key).removeprefix('data.')}".rpartition(".")
        node = OmegaConf.select(trained_with, parent)
        known = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
        raise ConfigError(f"{parent}.{leaf}: no such key in the data config the checkpoint was trained with "
                          f"({data.name}){did_you_mean(leaf, known, parent)}") from None
    except OmegaConfBaseException as err:  # e.g. a mapping where the run's config holds a list
        key = next((k for k in changes if not _merges(data.get(k), changes[k])), next(iter(changes)))
        held = data.get(key)
        kind = "a list" if isinstance(held, ListConfig) else "a mapping" if isinstance(held, DictConfig) else "a value"
        raise ConfigError(f"data.{key}: the data config the checkpoint was trained with ({data.name}) holds {kind} "
                          f"there ({str(err).splitlines()[0]})") from None


def _leaf_keys(node, prefix: str) -> list[str]:
    """The dotted keys a (nested) override sets: `data.source.seed`, not `data.source`."""
    return [key for name, value in node.items()
            for key in (_leaf_keys(value, f"{prefix}{name}.") if isinstance(value, DictConfig) else [f"{prefix}{name}"])]


def _merges(old, new) -> bool:
    try:
        OmegaConf.merge({"v": old}, {"v": new})
        return True
    except OmegaConfBaseException:
        return False


def own_data_overrides(argv: list[str]) -> list[str]:
    """Without `data=<name>`, `data.X=...` changes the checkpoint's run's own data config, which is only
    read once the job runs: Hydra gets it as `+data.X=...` (its `data` is empty until then)."""
    if any(override_key(arg) == "data" for arg in argv):
        return argv
    return [f"+{arg}" if arg.startswith("data.") else arg for arg in argv]


_main = hydra_entry("evaluate", run)


def main() -> None:
    sys.argv[1:] = own_data_overrides(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
