"""Where the Hydra configs are, the resolvers they use, and value checks that run before any work."""

from __future__ import annotations

import logging
import math
import os
from importlib import resources
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from mstr.errors import ConfigError
from mstr.options import (BINS_FROM, CLASS_WEIGHTS, COLUMN_ORDERS, DISTILL_AUGMENTS, DISTILL_METHODS,
                          DISTILL_SETTINGS, DISTILL_TEACHERS, LOSSES, ROLES, SAMPLERS, SCALERS, SCHEDULERS, TASKS,
                          TREE_TEACHERS, VAL_MONITORS)

log = logging.getLogger("mstr.config")


def config_dir() -> str:
    """`configs/` of a source checkout, else the copy packaged inside the installed wheel."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if (checkout / "train.yaml").is_file():
        return str(checkout)
    packaged = resources.files("mstr") / "configs"
    if (packaged / "train.yaml").is_file():
        return str(packaged)
    raise ConfigError("cannot find mstr's configs (neither ./configs in a checkout nor mstr/configs in the "
                      "installed package); reinstall mstr")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("mstr_pid"):
        OmegaConf.register_new_resolver("mstr_pid", lambda: os.getpid(), use_cache=True)
    if not OmegaConf.has_resolver("mstr_visible_gpus"):  # ${mstr_visible_gpus:MINIMUM}
        OmegaConf.register_new_resolver("mstr_visible_gpus", _visible_gpu_count, use_cache=True)
    if not OmegaConf.has_resolver("mstr_config_groups"):  # --help's list (configs/hydra/default.yaml)
        OmegaConf.register_new_resolver("mstr_config_groups", config_groups)


def config_groups(config_name: str = "train") -> str:
    """The config groups the entry config `config_name` composes, each with its options, one line a
    group, as `--help` shows them: Hydra's own list would offer every group of the folder (evaluate's
    `model=`, which it has no use for) and the bases that options extend (`data/_datamodule.yaml`)."""
    root = Path(config_dir())
    defaults = OmegaConf.load(root / f"{config_name}.yaml").get("defaults", [])
    composed = [str(k) for entry in defaults if isinstance(entry, DictConfig) for k in entry]
    lines = []
    for group in sorted(g for g in composed if g != "hydra" and (root / g).is_dir()):
        lines.append(f"{group}: {', '.join(group_options(group))}")
    return "\n".join(lines)


def group_options(group: str) -> list[str]:
    """The options of config group `group` (`configs/<group>/*.yaml`, less the `_bases` they extend); []
    when `group` is no config group of ours."""
    return sorted(f.stem for f in (Path(config_dir()) / group).glob("*.yaml") if not f.name.startswith("_"))


def override_key(override: str) -> str:
    """The config key (or group) a command-line override sets: `a.b` of `a.b=1`, `+a.b=1`, `~a.b`."""
    return override.split("=", 1)[0].lstrip("+~")


def _visible_gpu_count(minimum: int = 0) -> int:
    from mstr.training.distributed import visible_gpus

    return max(len(visible_gpus()), int(minimum))


def compose_config(config_name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """An entry point's config composed with `overrides`, as its command line would (in-process runs:
    benchmarks, searches, tests). Without Hydra's run dir: give `paths.output_dir` for a job."""
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


TEMPERATURES = (0.01, 1000.0)  # distill.temperature: where float32 computes the KD term (see `validate`)


def _get(cfg: DictConfig, key: str, default=None):
    return OmegaConf.select(cfg, key, default=default)


def check_backbones(cfg: DictConfig, method, window: int) -> None:
    """The model's backbone settings (and a network teacher's), checked as the builder will check them
    for windows of `window` flows."""
    from mstr.models.backbone import BackboneConfig  # torch: only once the cheaper checks have passed

    keys = ["model.backbone"]
    if method not in (None, "none") and _get(cfg, "distill.teacher", "network") == "network":
        keys.append("distill.teacher_model.backbone")
    for key in keys:
        values = _get(cfg, key)
        if not isinstance(values, DictConfig):  # model.backbone=null: Hydra's "not an OmegaConf config" traceback
            raise ConfigError(f"{key}={values!r}: must be the backbone's settings; set them one by one "
                              f"({key}.widths=[8,16], ...)")
        try:
            backbone = BackboneConfig.from_dict(OmegaConf.to_container(values, resolve=True))
            backbone.validate()
            backbone.check_window(window)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}: {err}") from None


def _one_of(names) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _integer(minimum: int):
    """A check that a value is a whole number >= `minimum` (true / false are not numbers here)."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _number(low: float, high: float = float("inf"), high_open: bool = False, low_open: bool = False):
    """A check that a value is a finite number in [low, high] (open at `high` with `high_open`, at `low`
    with `low_open`): `inf` and `nan` are refused, which would train to NaN weights without a word."""
    return lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                      and (low < v if low_open else low <= v) and (v < high if high_open else v <= high))


def _batches(value) -> bool:
    """Lightning's `limit_*_batches`: a share of the batches in (0, 1], or how many (an integer >= 1)."""
    return _number(0.0, 1.0, low_open=True)(value) if isinstance(value, float) else _integer(1)(value)


def validate(cfg: DictConfig) -> None:
    """Reject config values that cannot work, naming the key (fails before any data is read)."""
    role = _get(cfg, "model.role")
    if role not in ROLES:
        raise ConfigError(f"model.role={role!r}: must be one of {list(ROLES)}")
    method = _get(cfg, "distill.method")
    if method not in ("none", *DISTILL_METHODS):
        raise ConfigError(f"distill.method={method!r}: must be one of {['none', *DISTILL_METHODS]}")
    # a key added with + (`+distill.hooks=[...]`) was read by nothing, and the run went on without it
    for key in sorted(set(_get(cfg, "distill", {})) - set(DISTILL_SETTINGS)):
        from mstr.preflight import did_you_mean  # it imports this module

        raise ConfigError(f"distill.{key}: no such setting{did_you_mean(key, list(DISTILL_SETTINGS), 'distill')}; "
                          f"distill's settings: {', '.join(DISTILL_SETTINGS)} (the stages that distill=features, "
                          "attention and combined match are the backbones' hook points, paired by depth)")
    if method != "none":
        temperature = _get(cfg, "distill.temperature")
        if not _number(*TEMPERATURES)(temperature):
            # The KD term's gradient is T x (student - teacher probabilities): it vanishes at a tiny T, and
            # logits / T overflow float32 near 1e-37 (NaN weights, exit code 0); past 1000 float32 no longer
            # resolves the softened probabilities, and near 1e20 they are NaN again.
            raise ConfigError(f"distill.temperature={temperature!r}: must be a number in [{TEMPERATURES[0]}, "
                              f"{TEMPERATURES[1]}] (e.g. 4)")
        alpha = _get(cfg, "distill.alpha")
        if not _number(0.0, 1.0)(alpha):
            raise ConfigError(f"distill.alpha={alpha!r}: must be a number in [0, 1]")
        # each weight with the methods whose term it scales (distill.method picks the terms; the others are off)
        terms = {"alpha": ("logits", "combined"), "feature_weight": ("features", "combined"),
                 "attention_weight": ("attention", "combined")}
        for key in ("feature_weight", "attention_weight"):  # alpha is checked above: every method's config has one
            value, methods = _get(cfg, f"distill.{key}", 0.0), terms[key]
            if not _number(0.0)(value):
                raise ConfigError(f"distill.{key}={value!r}: must be a number >= 0")
            if value and method not in methods:
                raise ConfigError(f"distill.{key}={value} with distill={method}: only distill={_one_of(methods)} "
                                  f"has that term; choose one of them, or leave distill.{key} at 0")
        own = [f"distill.{key}" for key, methods in terms.items() if method in methods]
        if not any(_get(cfg, key, 0.0) for key in own):  # the teacher was trained (or fit) for nothing
            raise ConfigError(f"distill={method} with {' and '.join(f'{key}=0' for key in own)} leaves no distillation "
                              f"term: give {_one_of(own)} a value > 0, or train on the labels alone with distill=none")
        warmup = _get(cfg, "distill.hint_warmup_fraction", 0.0)
        if not isinstance(warmup, (int, float)) or not 0.0 <= warmup <= 1.0:
            raise ConfigError(f"distill.hint_warmup_fraction={warmup!r}: must be a number in [0, 1]")
        if warmup and method == "logits":  # it ramps the hint and attention terms, which logits has not
            raise ConfigError(f"distill.hint_warmup_fraction={warmup} with distill=logits: it ramps up the hint and "
                              "attention terms of distill=features, attention or combined; leave it at 0")
        teacher = _get(cfg, "distill.teacher", "network")
        if teacher not in DISTILL_TEACHERS:
            raise ConfigError(f"distill.teacher={teacher!r}: must be one of {list(DISTILL_TEACHERS)}")
        if teacher in TREE_TEACHERS and method != "logits":
            raise ConfigError(f"distill.method={method} with distill.teacher={teacher}: a tree ensemble has no "
                              "intermediate maps to match; use distill=logits")
        augment = _get(cfg, "distill.augment", "none")
        if augment not in DISTILL_AUGMENTS:
            raise ConfigError(f"distill.augment={augment!r}: must be one of {list(DISTILL_AUGMENTS)}")
        if augment != "none" and (method not in ("logits", "combined") or alpha == 0):
            raise ConfigError(f"distill.augment={augment} needs the logit term: use distill=logits or combined, "
                              "with distill.alpha > 0")
        fraction = _get(cfg, "distill.augment_fraction", 1.0)
        if not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 4.0:
            raise ConfigError(f"distill.augment_fraction={fraction!r}: must be a number in (0, 4] "
                              "(augmented windows per labelled window)")
        if fraction != 1.0 and augment == "none":  # no augmented windows to count: it went unused
            raise ConfigError(f"distill.augment_fraction={fraction} with distill.augment=none: it sizes the augmented "
                              "windows of distill.augment=mixup or swap; choose one, or leave it at 1")
        ckpt = _get(cfg, "distill.teacher_ckpt")
        if ckpt is not None and teacher in TREE_TEACHERS:  # the booster is fit here: the file would go unread
            raise ConfigError(f"distill.teacher_ckpt={ckpt} with distill.teacher={teacher}: a checkpoint is a "
                              "network teacher; use distill.teacher=network to distil from it, or "
                              "distill.teacher_ckpt=null to fit the booster")
        if ckpt is not None and not Path(str(ckpt)).is_file():
            raise ConfigError(f"distill.teacher_ckpt={ckpt}: no such file; give a teacher checkpoint "
                              "or distill.teacher_ckpt=null to train one")
    checks = {
        "data.window": (_get(cfg, "data.window"), lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
        "data.batch_size": (_get(cfg, "data.batch_size"), lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
        "data.context_swap": (_get(cfg, "data.context_swap", 0.0),
                              lambda v: isinstance(v, (int, float)) and 0.0 <= v <= 1.0, "a number in [0, 1]"),
        "data.val_unseen_types": (_get(cfg, "data.val_unseen_types", 0.0),
                                  lambda v: isinstance(v, (int, float)) and 0.0 <= v < 1.0,
                                  "a number in [0, 1) (the share of train's attack rows held out as whole types)"),
        "data.task": (_get(cfg, "data.task"), lambda v: v in TASKS, _one_of(TASKS)),
        "data.sampler": (_get(cfg, "data.sampler"), lambda v: v in SAMPLERS, _one_of(SAMPLERS)),
        "data.column_order": (_get(cfg, "data.column_order", "data"), lambda v: v in COLUMN_ORDERS,
                              _one_of(COLUMN_ORDERS)),
        "loss.name": (_get(cfg, "loss.name"), lambda v: v in LOSSES, _one_of(LOSSES)),
        "loss.class_weights": (_get(cfg, "loss.class_weights"), lambda v: v in CLASS_WEIGHTS, _one_of(CLASS_WEIGHTS)),
        "model.optim.lr": (_get(cfg, "model.optim.lr"), _number(0.0, low_open=True), "a number > 0"),
        "model.optim.weight_decay": (_get(cfg, "model.optim.weight_decay", 0.0), _number(0.0), "a number >= 0"),
        "model.optim.scheduler": (_get(cfg, "model.optim.scheduler", "onecycle"), lambda v: v in SCHEDULERS,
                                  _one_of(SCHEDULERS)),
        "model.optim.warmup_fraction": (_get(cfg, "model.optim.warmup_fraction", 0.1),
                                        lambda v: isinstance(v, (int, float)) and 0.0 < v < 1.0, "a number in (0, 1)"),
        "data.val_fraction": (_get(cfg, "data.val_fraction", 0.15),
                              lambda v: isinstance(v, (int, float)) and 0.0 < v < 1.0, "a number in (0, 1)"),
        # numpy's seeds (which Lightning's seed_everything sets) end at 2^32 - 1
        "seed": (_get(cfg, "seed", 0), lambda v: _integer(0)(v) and v < 2**32, "an integer in [0, 4294967295]"),
        "trainer.max_epochs": (_get(cfg, "trainer.max_epochs"), lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
        "trainer.min_epochs": (_get(cfg, "trainer.min_epochs", 0), _integer(0), "an integer >= 0"),
        "trainer.log_every_n_steps": (_get(cfg, "trainer.log_every_n_steps", 1), _integer(1), "an integer >= 1"),
        "data.eval_batch_size": (_get(cfg, "data.eval_batch_size", 1), _integer(1), "an integer >= 1"),
        "data.num_workers": (_get(cfg, "data.num_workers", 0), _integer(0), "an integer >= 0"),
        "data.max_categories": (_get(cfg, "data.max_categories", 1), _integer(1),
                                "an integer >= 1 (values one-hot per categorical column; the rest share one)"),
        "data.scaler": (_get(cfg, "data.scaler", SCALERS[0]), lambda v: v in SCALERS, _one_of(SCALERS)),
        "data.numeric_bins": (_get(cfg, "data.numeric_bins", 0), lambda v: _integer(0)(v) and v != 1,
                              "0 (off) or the number of bins (>= 2)"),
        "data.bins_from": (_get(cfg, "data.bins_from", BINS_FROM[0]), lambda v: v in BINS_FROM, _one_of(BINS_FROM)),
        "data.frequent_values": (_get(cfg, "data.frequent_values", 0), _integer(0),
                                 "0 (off) or how many values per column (>= 1)"),
        "loss.label_smoothing": (_get(cfg, "loss.label_smoothing", 0.0), _number(0.0, 1.0, high_open=True),
                                 "a number in [0, 1)"),
        "loss.gamma": (_get(cfg, "loss.gamma", 0.0), _number(0.0), "a number >= 0"),
        "callbacks.early_stopping.patience": (_get(cfg, "callbacks.early_stopping.patience", 0), _integer(0),
                                              "an integer >= 0 (validation epochs without improvement)"),
        "callbacks.progress_bar.refresh_rate": (_get(cfg, "callbacks.progress_bar.refresh_rate", 1), _integer(0),
                                                "an integer >= 0 (steps between redraws; 0: no bar)"),
        "callbacks.last_checkpoint.every_n_train_steps": (
            _get(cfg, "callbacks.last_checkpoint.every_n_train_steps", 0), _integer(0),
            "an integer >= 0 (0: at epoch ends only)"),
    }
    # what selects the kept checkpoint and stops training: a metric no epoch logs failed after the first one
    selecting = [c for c in ("model_checkpoint", "early_stopping") if _get(cfg, f"callbacks.{c}") is not None]
    # Lightning's batch limits: a share of the batches, or how many. 0 trained nothing (and reported the
    # untrained model), or validated nothing, which the callbacks that select on validation need.
    batches = "a share of the batches in (0, 1] or a number of batches >= 1"
    checks["trainer.limit_train_batches"] = (_get(cfg, "trainer.limit_train_batches", 1.0), _batches, batches)
    checks["trainer.limit_val_batches"] = (
        _get(cfg, "trainer.limit_val_batches", 1.0), lambda v: _batches(v) or (v == 0 and not selecting),
        batches + ("; 0 (no validation) only with callbacks.model_checkpoint=null callbacks.early_stopping=null, "
                   "which select on it" if selecting else " (or 0: no validation)"))
    for callback in selecting:
        checks[f"callbacks.{callback}.monitor"] = (_get(cfg, f"callbacks.{callback}.monitor"),
                                                   lambda v: v in VAL_MONITORS, _one_of(VAL_MONITORS))
        checks[f"callbacks.{callback}.mode"] = (_get(cfg, f"callbacks.{callback}.mode", "min"),
                                                lambda v: v in ("min", "max"), "min or max")
    for key in ("plots", "test", "data.on_device", "trainer.deterministic", "trainer.enable_progress_bar"):
        checks[key] = (_get(cfg, key, False), lambda v: isinstance(v, bool), "true or false")
    if method != "none" and _get(cfg, "distill.teacher", "network") == "network":
        checks["distill.teacher_max_epochs"] = (_get(cfg, "distill.teacher_max_epochs", 1), _integer(1),
                                                "an integer >= 1")
    for key, (value, ok, expected) in checks.items():
        if not ok(value):
            raise ConfigError(f"{key}={value!r}: must be {expected}")
    check_backbones(cfg, method, _get(cfg, "data.window"))
    order = _get(cfg, "data.column_order", "data")
    if order != "data":
        stems = [_get(cfg, "model.backbone.stem", "tokens")]
        if role == "student" and method != "none" and _get(cfg, "distill.teacher", "network") == "network":
            stems.append(_get(cfg, "distill.teacher_model.backbone.stem", "tokens"))
        if all(stem == "linear" for stem in stems):  # the order is computed (dependence: on 20k rows) for nothing
            log.warning("data.column_order=%s has no effect with model.backbone.stem=linear: every column enters one "
                        "dense layer, whose output has no column axis to order; use stem=tokens or leave the order "
                        "at data", order)
    # each loss's own setting (added with +loss.<key>=... to the other loss, it went unused)
    for key, owner in (("label_smoothing", "ce"), ("gamma", "focal")):
        value, name = _get(cfg, f"loss.{key}"), _get(cfg, "loss.name")
        if value and name != owner:
            raise ConfigError(f"loss.{key}={value} with loss={name}: only loss={owner} has it; drop it or use "
                              f"loss={owner}")
    if _get(cfg, "data.on_device", False) and _get(cfg, "data.num_workers", 0):
        raise ConfigError(f"data.on_device=true with data.num_workers={_get(cfg, 'data.num_workers')}: batches "
                          "gathered on the training device need no loader workers; set data.num_workers=0")
    fpr = _get(cfg, "novelty.fpr", 0.0)
    if not isinstance(fpr, (int, float)) or not 0.0 <= fpr < 1.0:
        raise ConfigError(f"novelty.fpr={fpr!r}: must be a number in [0, 1) (0 turns the novelty gate off)")
    resume = _get(cfg, "resume", "never")
    if resume not in ("auto", "never"):
        raise ConfigError(f"resume={resume!r}: must be auto (continue an unfinished run of this config) or never")
    ckpt_path = _get(cfg, "ckpt_path")
    if ckpt_path not in (None, "last") and Path(str(ckpt_path)).is_dir():  # a run dir: continued in place
        raise ConfigError(f"ckpt_path={ckpt_path}: a folder, not a checkpoint file; to continue the run in it, give "
                          f"hydra.run.dir={ckpt_path} resume=auto (or ckpt_path=<file>.ckpt to start from one)")
    if ckpt_path not in (None, "last") and not Path(str(ckpt_path)).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint file (to continue an unfinished run of this "
                          "config: resume=auto)")
    _check_data_source(cfg)


def _check_data_source(cfg: DictConfig) -> None:
    """A named dataset's own `check` (its folder, its enumerated settings), so that a data root left
    unset or a misspelt variant stops the command line, not a run that has made its dir."""
    import importlib

    target = str(_get(cfg, "data.source._target_", ""))
    module, _, _ = target.rpartition(".")
    if not module.startswith("mstr.data.datasets."):
        return
    check = getattr(importlib.import_module(module), "check", None)
    if check is not None:
        source = OmegaConf.to_container(cfg.data.source, resolve=True)
        check(**{k: v for k, v in source.items() if not k.startswith("_")})
