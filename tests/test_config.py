import re
import subprocess
import sys
from pathlib import Path

import pytest

from mstr.config import config_dir
from mstr.errors import ConfigError
from mstr.options import DISTILL_SETTINGS
from mstr.preflight import preflight

REPO = Path(__file__).resolve().parent.parent


def _options(group):
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("group", ["data", "model", "distill", "loss", "trainer", "logger", "callbacks",
                                   "paths", "experiment", "debug"])
def test_every_option_of_every_group_composes(group, compose_cfg):
    """Each option composes and is what the run gets: its own plain values (not interpolated, not
    overridden by a later default) land in its group's section."""
    import yaml

    options = _options(group)
    assert options, f"configs/{group}/ is empty"
    for option in options:
        cfg = compose_cfg([f"{group}={option}"])
        assert cfg.model.role in ("teacher", "student")
        if group == "data":
            assert cfg.data.name == option and cfg.data.source._target_.endswith(f"{option}.load")
        if group == "distill":  # every key a distill config has is one the checks know (the rest are refused)
            assert cfg.distill.method == option and set(cfg.distill) <= set(DISTILL_SETTINGS)
            assert option != "logits" or set(cfg.distill) == set(DISTILL_SETTINGS)
        if group in ("experiment", "debug"):  # global packages: they set keys of other groups
            continue
        own = yaml.safe_load((Path(config_dir()) / group / f"{option}.yaml").read_text()) or {}
        plain = {k: v for k, v in own.items() if k != "defaults" and not isinstance(v, (dict, list))
                 and not (isinstance(v, str) and "${" in v)}
        assert {k: cfg[group][k] for k in plain} == plain, f"{group}={option}"


def test_the_default_job_distils_a_student_from_a_teacher_it_trains(compose_cfg):
    cfg = compose_cfg([])
    assert cfg.model.role == "student" and cfg.distill.method == "logits"
    assert cfg.distill.teacher_model.role == "teacher" and cfg.distill.teacher_ckpt is None


def test_debug_limit_logs_within_its_few_steps(compose_cfg):
    """Lightning warned on every `debug=limit` run that its 20-step logging interval outran the 5-step epoch."""
    trainer = compose_cfg(["debug=limit"]).trainer
    assert trainer.log_every_n_steps <= trainer.limit_train_batches


def test_the_small_student_is_the_student_with_one_narrow_stage_under_any_experiment(compose_cfg):
    """`model=student_small` changes the backbone's size and nothing else, and wins over an experiment's
    choice of model while keeping the experiment's own model settings."""
    base = compose_cfg(["experiment=unsw_nb15"])
    small = compose_cfg(["experiment=unsw_nb15", "model=student_small"])
    assert small.model.role == "student" and list(small.model.backbone.widths) == [4]
    assert small.model.backbone.token_dim == 3 and small.model.backbone.row_branch  # the experiment's branch
    assert small.model.optim == base.model.optim and small.distill == base.distill
    changed = {k for k in base.model.backbone if base.model.backbone[k] != small.model.backbone[k]}
    assert changed == {"widths", "token_dim"}


@pytest.mark.parametrize("override, key", [
    ("distill.temperature=0", "distill.temperature"),
    ("distill.temperature=-2", "distill.temperature"),
    ("distill.alpha=1.5", "distill.alpha"),
    # trained to NaN weights (F1 0) with exit code 0, or with a KD term that all but vanishes
    ("distill.temperature=1e-300", "distill.temperature=1e-300: must be a number in [0.01, 1000.0]"),
    ("distill.temperature=1e30", "distill.temperature=1e+30: must be a number in [0.01, 1000.0]"),
    ("distill.temperature=0.01", None),
    ("distill.alpha=true", "distill.alpha=True: must be a number in [0, 1]"),  # trained as alpha 1
    # the teacher trained for a term of weight 0; with augment a traceback once the teacher was trained
    ("distill.alpha=0", "distill=logits with distill.alpha=0 leaves no distillation term: give distill.alpha a "),
    ("distill=features distill.feature_weight=0", "distill=features with distill.feature_weight=0 leaves no "),
    ("distill=attention distill.attention_weight=0", "distill=attention with distill.attention_weight=0 leaves no "),
    ("distill=combined distill.alpha=0 distill.feature_weight=0 distill.attention_weight=0",
     "distill=combined with distill.alpha=0 and distill.feature_weight=0 and distill.attention_weight=0 leaves no "),
    ("distill=combined distill.alpha=0 distill.feature_weight=0", None),  # attention alone
    ("distill=combined distill.alpha=0 distill.augment=mixup", "distill.augment=mixup needs the logit term"),
    ("distill=combined distill.alpha=0", None),  # hints and attention alone
    # a key added with + went unread: there are no hook names to choose, the stages are paired by depth
    ("distill=features +distill.hooks=[stages.0]", "distill.hooks: no such setting; distill's settings: method, "),
    ("distill=none +distill.temprature=2", "distill.temprature: no such setting; did you mean distill.temperature?"),
    ("distill=none ++distill.teacher_max_epochs=2", None),  # what `mstr.bench --teacher-epochs` gives every run
    ("distill.alpha=1", None),
    ("data.window=0", "data.window"),
    ("data.context_swap=1.5", "data.context_swap"),
    ("data.sampler=oversample", "data.sampler"),
    ("data.column_order=alphabetical", "data.column_order"),
    ("data.val_unseen_types=1.5", "data.val_unseen_types"),
    ("data.task=regression", "data.task"),
    ("loss=focal", None),  # valid: no error
    ("model.role=giant", "model.role"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("distill.teacher_ckpt=/nonexistent/teacher.ckpt", "distill.teacher_ckpt"),
    ("data.val_fraction=1.5", "data.val_fraction"),
    ("model.optim.weight_decay=-1", "model.optim.weight_decay"),
    ("model.optim.scheduler=cosine", "model.optim.scheduler"),  # not built: would silently train onecycle
    ("model.optim.warmup_fraction=1", "model.optim.warmup_fraction"),
    ("seed=abc", "seed"),
    ("model.backbone.widths=[]", "model.backbone: invalid backbone setting(s): widths=[]"),
    ("model.backbone.widths=abc", "model.backbone: invalid backbone setting(s): widths='abc'"),
    ("model.backbone.feature_kernels=[2]", "model.backbone: invalid backbone setting(s): feature_kernels=[2]"),
    # not whole numbers, or no settings at all: tracebacks from torch or Hydra once the data was read
    ("model.backbone.widths=[8.5]", "model.backbone: invalid backbone setting(s): widths=[8.5]"),
    ("model.backbone.head_hidden=1.5", "model.backbone: invalid backbone setting(s): head_hidden=1.5"),
    ("model.backbone=null", "model.backbone=None: must be the backbone's settings"),
    # a block without a branch: a traceback from the builder once the data was read
    ("model.backbone.feature_kernels=[] data.window=1", "model.backbone: feature_kernels=[]: stage 1 has no time "
                                                        "dilation inside a window of 1 flow(s)"),
    ("model=teacher model.backbone.feature_kernels=[] data.window=4", "model.backbone: feature_kernels=[]: stage 3"),
    ("distill.teacher_model.backbone.dropout=1.5", "distill.teacher_model.backbone: invalid backbone setting(s): "
                                                   "dropout=1.5"),
    # each of these went through to the run (a traceback there, or a silently odd run)
    ("data.eval_batch_size=0", "data.eval_batch_size=0: must be an integer >= 1"),
    ("data.num_workers=-1", "data.num_workers=-1: must be an integer >= 0"),
    ("data.max_categories=-1", "data.max_categories=-1: must be an integer >= 1"),
    ("data.scaler=robust", "data.scaler='robust': must be standard or minmax"),
    ("data.numeric_bins=1", "data.numeric_bins=1: must be 0 (off) or the number of bins (>= 2)"),
    ("data.bins_from=tree", "data.bins_from='tree': must be quantile or target"),
    ("data.frequent_values=-1", "data.frequent_values=-1"),
    ("loss.label_smoothing=1.5", "loss.label_smoothing=1.5: must be a number in [0, 1)"),
    ("loss.label_smoothing=abc", "loss.label_smoothing='abc'"),
    ("loss=focal loss.gamma=-1", "loss.gamma=-1: must be a number >= 0"),
    ("loss=focal +loss.label_smoothing=0.1", "loss.label_smoothing=0.1 with loss=focal"),  # was silently unused
    ("+loss.gamma=3", "loss.gamma=3 with loss=ce: only loss=focal has it"),  # likewise
    ("test=maybe", "test='maybe': must be true or false"),
    ("model.backbone.residual=maybe", "invalid backbone setting(s): residual='maybe' (must be true or false)"),
    ("trainer.min_epochs=-1", "trainer.min_epochs=-1"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0"),
    ("callbacks.early_stopping.patience=-1", "callbacks.early_stopping.patience=-1"),
    ("callbacks.progress_bar.refresh_rate=-1", "callbacks.progress_bar.refresh_rate=-1"),
    ("callbacks.last_checkpoint.every_n_train_steps=-1", "callbacks.last_checkpoint.every_n_train_steps=-1"),
    ("distill.teacher_max_epochs=0", "distill.teacher_max_epochs=0: must be an integer >= 1"),
    # the synthetic generator's settings: refused once the run had made its dir (n_hosts=0, days=0: tracebacks)
    ("data.source.n_flows=10", "data.source.n_flows=10: must be an integer >= 500"),
    ("data.source.n_hosts=0", "data.source.n_hosts=0: must be an integer >= 1"),
    ("data.source.days=0", "data.source.days=0: must be a number > 0"),
    ("data.source.test_fraction=1", "data.source.test_fraction=1: must be a number in (0, 1)"),
    # no batches: trained nothing and reported the untrained model (exit 0), or validated nothing and failed
    # on the monitor after the first epoch; a share over 1 was refused only once the data was read
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches=0: must be a share of the batches in (0, 1] or "),
    ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5: must be a share"),
    ("trainer.limit_val_batches=0", "trainer.limit_val_batches=0: must be a share of the batches in (0, 1] or a "
                                    "number of batches >= 1; 0 (no validation) only with"),
    ("trainer.limit_val_batches=0 callbacks.early_stopping=null callbacks.model_checkpoint=null", None),
    # a metric no epoch logs: a traceback from Lightning after the first epoch (the teacher's, when distilling)
    ("callbacks.model_checkpoint.monitor=val/foo", "callbacks.model_checkpoint.monitor='val/foo': must be val/loss, "),
    ("callbacks.early_stopping.monitor=val/f2", "callbacks.early_stopping.monitor='val/f2': must be val/loss, "),
    ("callbacks.model_checkpoint.mode=maximum", "callbacks.model_checkpoint.mode='maximum': must be min or max"),
    ("callbacks.early_stopping=null callbacks.model_checkpoint.monitor=val/loss", None),
    # not finite: trained to NaN weights (F1 0) with exit code 0
    ("distill.temperature=nan", "distill.temperature=nan: must be a number in [0.01, 1000.0]"),
    ("distill.temperature=inf", "distill.temperature=inf: must be a number in [0.01, 1000.0]"),
    ("model.optim.lr=inf", "model.optim.lr=inf: must be a number > 0"),
    ("model.optim.weight_decay=inf", "model.optim.weight_decay=inf: must be a number >= 0"),
    ("loss=focal loss.gamma=inf", "loss.gamma=inf: must be a number >= 0"),
    ("distill=features distill.feature_weight=inf", "distill.feature_weight=inf: must be a number >= 0"),
    # past numpy's seeds: a traceback from Lightning's seed_everything once the run had started
    ("seed=4294967296", "seed=4294967296: must be an integer in [0, 4294967295]"),
    ("seed=4294967295", None),  # the largest: valid
    # weights of terms the method leaves out trained without them
    ("distill.feature_weight=1", "distill.feature_weight=1 with distill=logits: only distill=features or combined"),
    ("distill=features distill.attention_weight=2", "distill.attention_weight=2 with distill=features"),
    ("distill.hint_warmup_fraction=0.3", "distill.hint_warmup_fraction=0.3 with distill=logits"),
    ("distill.augment_fraction=2", "distill.augment_fraction=2 with distill.augment=none"),
    ("distill.augment_fraction=2 distill.augment=mixup", None),
    # a file that exists: a tree teacher used to fit its booster and never read it
    (f"distill.teacher=xgboost distill.teacher_ckpt={REPO / 'README.md'}", "with distill.teacher=xgboost: a "
                                                                           "checkpoint is a network teacher"),
    # a run dir: was told to use ckpt_path=last, which looks for the newest run, not this one
    (f"ckpt_path={REPO / 'configs'}", f"a folder, not a checkpoint file; to continue the run in it, give "
                                      f"hydra.run.dir={REPO / 'configs'} resume=auto"),
    ("ckpt_path=nope.ckpt", "ckpt_path=nope.ckpt: no such checkpoint file (to continue an unfinished run"),
])
def test_bad_values_are_rejected_before_work_naming_the_key(override, key):
    if key is None:
        preflight(override.split(), "train")
        return
    with pytest.raises(ConfigError, match=re.escape(key)):
        preflight(override.split(), "train")


def test_a_sweep_is_checked_job_by_job_not_by_its_fixed_overrides_alone():
    """Without the swept values the command line has the default distill=logits, which has no hint term;
    every job of this sweep has one."""
    preflight(["-m", "distill=features,combined", "distill.feature_weight=2"], "train")
    with pytest.raises(ConfigError, match=re.escape("sweep job distill=logits: distill.feature_weight=2 with")):
        preflight(["-m", "distill=logits,features", "distill.feature_weight=2"], "train")


@pytest.mark.slow  # reads a flows file: 5 s
def test_a_backbone_is_checked_again_at_the_window_that_rows_without_time_order_get(tmp_path, compose_cfg):
    """data.window=4 passes the command-line check, but rows without a time column get windows of one flow,
    where a backbone without feature kernels has no branch: one line, not the builder's traceback."""
    import numpy as np
    import pandas as pd

    from mstr.train import run

    pd.DataFrame({"bytes": np.arange(400) % 97, "label": ["scan", "benign"] * 200}).to_csv(tmp_path / "f.csv",
                                                                                          index=False)
    cfg = compose_cfg(["data=flows", f"data.path={tmp_path / 'f.csv'}", "data.window=4", "distill=none",
                       "model.backbone.feature_kernels=[]"])
    with pytest.raises(ConfigError, match=re.escape("feature_kernels=[]: stage 1 has no time dilation inside a "
                                                    "window of 1 flow(s)")):
        run(cfg)


@pytest.mark.parametrize("overrides, message", [
    (["data=nope"], "data=nope: no such config; options: cic_ids2017, flows, nsl_kdd, synthetic, unsw_nb15"),
    (["model=studnet"], "model=studnet: no such config; options: student, student_small, teacher; did you mean student?"),
    (["distill.temprature=4"], "distill.temprature: no such key; did you mean distill.temperature? "
                               "(a new key is added with +distill.temprature=...)"),
    (["modle.lr=1"], "modle.lr: no such key; did you mean model? "),
    (["seed=1", "plot=false"], "plot: no such key; did you mean plots? "),  # a top-level key
    # the keys offered are those of the group chosen on the same command line
    (["data=nsl_kdd", "data.varient=20percent"], "data.varient: no such key; did you mean data.variant? "),
    (["trainer.max_epochs=2", "model.backbone.widths=[8,"], "model.backbone.widths=[8,: no viable alternative at "
                                                            "input '[8,'; see `--help` for the override syntax"),
    # a label or folder name with letters outside ASCII: Hydra takes them only quoted
    (["data=flows", "data.benign=Bénin"], "data.benign=Bénin: token recognition error at: 'é'; quote the value: "
                                          "'data.benign=\"Bénin\"'"),
    # deleting a setting of the entry config: a traceback inside the job (its checks read a default)
    (["~seed"], "~seed: seed is a setting the job reads, not one to delete; give it a value (seed=...)"),
    (["debug=fast", "~test"], "~test: test is a setting the job reads"),
    # Hydra's ValueError traceback ("Config group override must be a string or a list")
    (["debug=null"], "debug=null: a config group takes one of its options: fast, limit; leave debug= out for its "
                     "default"),
])
def test_unknown_keys_groups_and_syntax_errors_say_what_to_type(overrides, message):
    with pytest.raises(ConfigError) as caught:
        preflight(overrides, "train")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_group_entry_may_still_be_deleted():
    cfg = preflight(["~callbacks.early_stopping"], "train")  # lightning-hydra-template's way to drop a callback
    assert "early_stopping" not in cfg.callbacks


def test_cli_bad_value_is_one_line_exit_2_no_traceback_no_output_dir(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mstr.train", "distill.temperature=-1"], cwd=tmp_path,
                          capture_output=True, text=True, env={**__import__("os").environ, "MSTR_LOG_DIR": str(tmp_path / "out")})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "distill.temperature" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_configs_are_found_from_outside_the_checkout(tmp_path):
    """`python -m mstr.train` must find configs/ wherever it is started."""
    proc = subprocess.run([sys.executable, "-m", "mstr.train", "--cfg", "job", "model=teacher"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "role: teacher" in proc.stdout


@pytest.mark.slow
def test_an_installed_wheel_carries_its_configs(tmp_path):
    """From a wheel (no checkout around it), `python -m mstr.train` still composes its configs."""
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "whl"),
                            str(REPO)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "whl").glob("mstr-*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                              str(tmp_path / "site"), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path / "site")}
    probe = subprocess.run([sys.executable, "-c", "import mstr.config as c; print(c.config_dir())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == str(tmp_path / "site" / "mstr" / "configs")
    proc = subprocess.run([sys.executable, "-m", "mstr.train", "--cfg", "job", "data=nsl_kdd"], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "name: nsl_kdd" in proc.stdout


def test_help_lists_each_group_with_its_options_and_no_bases():
    """`--help` offers what `group=option` accepts: `data/_datamodule.yaml` is a base that every data
    option extends, and `data=_datamodule` is no dataset."""
    out = subprocess.run([sys.executable, "-m", "mstr.train", "--help"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    groups = dict(line.split(": ", 1) for line in out.split("== Config ==")[0].splitlines() if ": " in line)
    assert groups["data"] == "cic_ids2017, flows, nsl_kdd, synthetic, unsw_nb15"
    assert groups["model"] == ", ".join(_options("model")) and "hydra" not in groups
    assert set(groups) == {d.name for d in Path(config_dir()).iterdir() if d.is_dir()} - {"hydra"}
    assert "seed: 0" in out.split("== Config ==")[1]
    # an entry point offers the groups it composes: evaluate's model comes from the checkpoint
    out = subprocess.run([sys.executable, "-m", "mstr.evaluate", "--help"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert [line.split(":")[0] for line in out.split("== Config ==")[0].splitlines() if ": " in line] == ["data", "paths"]
    with pytest.raises(ConfigError, match=r"^model=...: python -m mstr.evaluate has no model setting \(a checkpoint "
                                          r"carries its own model and training settings\)"):
        preflight(["ckpt_path=x.ckpt", "model=teacher"], "evaluate", check_values=False)


def test_a_trainer_or_callback_value_lightning_refuses_is_one_line_naming_its_section(compose_cfg, tmp_path):
    """Values only Lightning can judge (an accelerator this machine lacks, devices=0, a negative batch
    limit) are named under their config key, not Hydra's wrapped traceback."""
    from mstr.training.runner import build_trainer

    for override, message in (("trainer.devices=0", r"^trainer: `Trainer\(devices=0\)` value is not a valid input"),
                              ("trainer.limit_train_batches=-1", r"^trainer: You have passed invalid value -1 for "
                                                                 r"limit_train_batches"),
                              ("trainer.accelerator=tpu", r"^trainer: Requirement 'torch_xla")):
        cfg = compose_cfg([override])
        with pytest.raises(ConfigError, match=message):
            build_trainer(cfg.trainer, cfg.callbacks, [], tmp_path)
    cfg = compose_cfg([])
    cfg.callbacks.model_checkpoint.mode = "sideways"
    with pytest.raises(ConfigError, match=r"^callbacks.model_checkpoint: .*sideways"):
        build_trainer(cfg.trainer, cfg.callbacks, [], tmp_path)


def test_a_column_order_that_no_model_of_the_run_reads_is_a_warning(compose_cfg, caplog):
    import logging

    from mstr.config import validate

    def warned(*overrides) -> bool:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mstr.config"):
            validate(compose_cfg(list(overrides)))
        return "has no effect with model.backbone.stem=linear" in caplog.text

    linear = ("data.column_order=dependence", "model.backbone.stem=linear")
    assert warned(*linear, "distill=none")
    assert warned(*linear, "distill.teacher=lightgbm")  # a booster reads the columns as a table
    assert warned(*linear, "distill.teacher_model.backbone.stem=linear")
    assert not warned(*linear)  # the teacher trained on the way convolves over the ordered columns
    assert not warned("data.column_order=dependence", "distill=none")
    assert not warned("model.backbone.stem=linear", "distill=none")  # the order of the file: nothing asked
