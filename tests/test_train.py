"""End-to-end runs through the real entry point, on small synthetic traffic."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL
from mstr.train import run

METRIC_KEYS = ["test/acc", "test/f1", "test/specificity", "test/fpr", "test/auroc", "test/precision",
               "test/recall", "val/acc_best", "val/f1_best", "model/params", "model/macs", "time/train_s",
               "time/test_s", "seed"]


def _check_metrics(metrics: dict, out: Path):
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in METRIC_KEYS:
        assert key in on_disk, key
    assert on_disk["test/fpr"] == pytest.approx(1.0 - on_disk["test/specificity"])
    return on_disk


@pytest.mark.parametrize("overrides", [
    ["model=teacher", "debug=fast"],
    ["model=student", "distill=none", "debug=fast"],
    ["model=student", "distill=logits", "debug=fast"],
    ["model=student", "distill=none", "debug=limit"],  # 10 steps: a one-step warm-up divided by zero
])
def test_fast_dev_run_of_each_mode(compose_cfg, tmp_path, overrides):
    cfg = compose_cfg([*overrides, "data.source.n_flows=3000", "trainer.enable_progress_bar=false"])
    metrics = run(cfg)
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert metrics["model/params"] > 0
    assert ("teacher/test/f1" in metrics) == ("distill=logits" in overrides)
    # the teacher's cached logits pass runs inside the student's fit: reported apart, so it can be excluded
    assert ("time/teacher_targets_s" in metrics) == ("distill=logits" in overrides)
    if "distill=logits" in overrides:
        assert 0 < metrics["time/teacher_targets_s"] < metrics["time/train_s"]


def test_a_run_writes_its_curves_and_test_report(compose_cfg, tmp_path):
    """What a user opens after a run: learning curves drawn from the csv history (one row per epoch,
    the teacher's too), and the test's per-class report, whose numbers are the run's own metrics."""
    import pandas as pd

    from mstr.jobs.loggers import epoch_history

    metrics = run(compose_cfg([*SMALL, "model=student", "distill=logits", "trainer.max_epochs=3", "plots=true"]))
    out = tmp_path / "run"
    for folder in (out, out / "teacher"):
        history = epoch_history(folder / "csv" / "metrics.csv")
        assert list(history.index) == [0, 1, 2]
        assert history[["train/loss_epoch", "val/loss", "val/f1"]].notna().all().all()
    # the kept checkpoint is the best epoch of the curve
    assert epoch_history(out / "csv" / "metrics.csv")["val/f1"].max() == pytest.approx(metrics["val/f1_best"])
    for png in ("curves.png", "teacher/curves.png", "confusion_matrix.png", "roc.png", "pr.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    report = pd.read_csv(out / "per_class.csv").set_index("class")
    assert report.loc["attack", "recall"] == pytest.approx(metrics["test/recall"], abs=1e-6)
    assert report.loc["attack", "precision"] == pytest.approx(metrics["test/precision"], abs=1e-6)
    assert report.loc["benign", "recall"] == pytest.approx(metrics["test/specificity"], abs=1e-6)
    assert "| attack |" in (out / "per_class.md").read_text()


def test_plots_false_writes_none(compose_cfg, tmp_path):
    run(compose_cfg([*SMALL, "model=student", "distill=none"]))  # the fixture's default: plots=false
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert not list((tmp_path / "run").glob("*.png")) and not (tmp_path / "run" / "per_class.csv").exists()


@pytest.mark.slow
def test_distillation_trains_a_teacher_once_then_reuses_it_or_a_given_checkpoint(compose_cfg, tmp_path, caplog):
    first = run(compose_cfg([*SMALL, "model=student"], out=tmp_path / "a"))
    _check_metrics(first, tmp_path / "a")
    assert first["teacher/source"].startswith(str(tmp_path / "a" / "teacher"))
    assert first["teacher/model/params"] >= 20 * first["model/params"]
    cached = list((tmp_path / "teachers").glob("*/teacher.ckpt"))
    assert len(cached) == 1

    second = run(compose_cfg([*SMALL, "model=student"], out=tmp_path / "b"))
    assert second["teacher/source"] == str(cached[0])  # same data + teacher config: reused, not retrained
    assert not (tmp_path / "b" / "teacher").exists()
    assert second["teacher/test/f1"] == first["teacher/test/f1"]

    given = run(compose_cfg([*SMALL, "model=student", f"distill.teacher_ckpt={cached[0]}"], out=tmp_path / "c"))
    assert given["teacher/source"] == str(cached[0])
    assert (tmp_path / "c" / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "c" / "checkpoints" / "last.ckpt").is_file()
    assert "holds a student" not in caplog.text and "validated on another carve" not in caplog.text
    # a student's checkpoint given as the teacher (the wrong file, as a rule) distils, with a warning
    run(compose_cfg([*SMALL, "model=student", f"distill.teacher_ckpt={tmp_path / 'c' / 'checkpoints' / 'best.ckpt'}"],
                    out=tmp_path / "d"))
    assert "checkpoints/best.ckpt holds a student (" in caplog.text and "not a teacher" in caplog.text


def test_a_teacher_trained_on_a_few_batches_is_not_reused_by_a_full_run(compose_cfg):
    from mstr.training.runner import teacher_key

    def key(*overrides):
        return teacher_key(compose_cfg(list(overrides)), dev_rows="rows")

    assert key("debug=limit") != key("trainer.max_epochs=2")  # debug=limit: 2 epochs of 5 batches
    assert key("trainer.limit_val_batches=2") != key()
    assert key("trainer.limit_train_batches=1.0") == key()  # no limit: the key of teachers cached before


def test_the_teacher_cache_key_holds_what_trains_a_teacher_and_only_that(compose_cfg):
    from mstr.training.runner import teacher_key

    def key(*overrides):
        return teacher_key(compose_cfg(list(overrides)), dev_rows="rows")

    # early stopping and checkpoint selection decide which teacher is kept (experiment=unsw_nb15 sets patience 20)
    for changed in ("callbacks.early_stopping.patience=20", "callbacks.early_stopping=null",
                    "callbacks.model_checkpoint.monitor=val/auroc", "trainer.min_epochs=3", "trainer=ddp_cpu",
                    "+trainer.accumulate_grad_batches=2", "+trainer.gradient_clip_val=1.0"):
        assert key(changed) != key(), changed
    # the defaults written out are the key of teachers cached before these entered it
    for same in ("callbacks.early_stopping.patience=4", "+callbacks.early_stopping.min_delta=0.0",
                 "+trainer.accumulate_grad_batches=1", "trainer.log_every_n_steps=5", "trainer.enable_progress_bar=false"):
        assert key(same) == key(), same
    # a booster is fit on the rows alone: the student's epochs, loss and limits never refit it
    tree = ("distill.teacher=lightgbm",)
    for student_only in ("trainer.max_epochs=3", "loss=focal", "debug=limit", "callbacks.early_stopping.patience=20"):
        assert key(*tree, student_only) == key(*tree), student_only
    assert key(*tree, "seed=1") != key(*tree) and key("distill.teacher=xgboost") != key(*tree)
    assert key(*tree, "data.window=4") != key(*tree)


@pytest.mark.slow
def test_teacher_from_other_data_is_refused(compose_cfg, tmp_path, caplog):
    from mstr.errors import DataError

    run(compose_cfg([*SMALL, "model=teacher"], out=tmp_path / "t"))
    ckpt = tmp_path / "t" / "checkpoints" / "best.ckpt"
    with pytest.raises(DataError, match="different data"):
        run(compose_cfg([*SMALL, "model=student", "data.window=4", f"distill.teacher_ckpt={ckpt}"], out=tmp_path / "s"))
    # same features and window, but the test cut moved: the teacher learnt from rows that are now test rows
    with pytest.raises(DataError, match="other rows than this data config's train"):
        run(compose_cfg([*SMALL, "model=student", "data.source.test_fraction=0.4", f"distill.teacher_ckpt={ckpt}"],
                        out=tmp_path / "s2"))
    # another validation carve of the same development rows (another seed) is fine: no test row moved; but
    # the teacher learnt some of the student's validation rows, which is said
    assert "validated on another carve" not in caplog.text
    moved_val = run(compose_cfg([*SMALL, "model=student", "data.val_fraction=0.2", "trainer.max_epochs=1",
                                 f"distill.teacher_ckpt={ckpt}"], out=tmp_path / "s3"))
    assert moved_val["teacher/source"] == str(ckpt)
    assert f"distill.teacher_ckpt={ckpt} was validated on another carve" in caplog.text
    # the columns in another order: the teacher's maps were compared with the student's column by column
    with pytest.raises(DataError, match=r"another order .*data.column_order=shuffled.*distill=features compares"):
        run(compose_cfg([*SMALL, "model=student", "distill=features", "data.column_order=shuffled",
                         f"distill.teacher_ckpt={ckpt}"], out=tmp_path / "s4"))


@pytest.mark.slow
def test_the_used_by_command_as_a_subprocess(tmp_path):
    """The user's own words, verbatim, plus one epoch; outputs go under MSTR_LOG_DIR."""
    env = {**os.environ, "MSTR_LOG_DIR": str(tmp_path / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-m", "mstr.train", "model=student", "distill.temperature=4", "trainer.max_epochs=1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 1
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    for key in METRIC_KEYS + ["teacher/test/f1", "teacher/model/params"]:
        assert key in metrics, key
    assert metrics["test/f1"] > 0.3 and metrics["teacher/test/f1"] > 0.3  # learned something real
    assert (runs[0] / ".hydra" / "config.yaml").is_file()
    assert (runs[0] / "checkpoints" / "best.ckpt").is_file()
    assert "test/f1" in proc.stdout  # the final table


def test_the_final_metrics_table_keeps_names_whole_and_folds_long_values(capsys, monkeypatch):
    """In 80 columns (a log file): every name on one line, a long path folded whole, no line wider."""
    from mstr.jobs.report import print_table

    monkeypatch.setenv("COLUMNS", "80")
    path = "/runs/2026-12-07_12-07-18_867092_9069/" + "x" * 60 + "/checkpoints/best.ckpt"
    metrics = {"time/compression/student_throughput_wps": 123456.7, "best_checkpoint": path, "test/acc": 0.5}
    print_table(metrics, "run", Path("metrics.json"))
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 80
    for name in metrics:
        assert any(f"│ {name} " in line for line in lines), name
    cells = "".join(line.split("│")[2].strip() for line in lines if line.count("│") == 3)
    assert path in cells and lines[-1] == "-> metrics.json"


def test_a_multiclass_run_goes_without_the_experiments_novelty_gate_and_says_so(tmp_path, caplog):
    """`experiment=nsl_kdd data.task=multiclass` (the issue's own command for CIC-IDS2017): the gate flags
    "attack", not which one, so the run goes on without it, with a warning, not a refusal."""
    import logging
    from types import SimpleNamespace

    from mstr.jobs.train import _novelty_metrics

    with caplog.at_level(logging.WARNING, logger="mstr.train"):
        assert _novelty_metrics(None, SimpleNamespace(num_classes=5), 0.01, tmp_path, scored=True) == {}
    assert "novelty.fpr=0.01: the novelty gate flags \"attack\", not which one, so a run of 5 classes" in caplog.text
    assert not (tmp_path / "novelty_gate.pt").exists()


@pytest.mark.slow
def test_the_novelty_gate_is_fit_and_kept_without_a_test_and_scored_with_one(compose_cfg, tmp_path):
    args = [*SMALL, "distill=none", "novelty.fpr=0.05", "plots=false"]
    untested = run(compose_cfg([*args, "test=false"], out=tmp_path / "a"))
    assert (tmp_path / "a" / "novelty_gate.pt").is_file()  # the gate of a run that reads no test set
    assert untested["novelty/fpr"] == 0.05 and "novelty/threshold" in untested
    assert not any(k.startswith(("novelty/test/", "test/")) for k in untested)
    tested = run(compose_cfg(args, out=tmp_path / "b"))
    assert (tmp_path / "b" / "novelty_gate.pt").is_file() and 0 <= tested["novelty/test/acc"] <= 1
    assert tested["novelty/threshold"] == untested["novelty/threshold"]  # fit on training data alone

@pytest.mark.slow
def test_a_resume_from_another_configs_checkpoint_is_refused_before_data_or_teacher_naming_the_settings(
        compose_cfg, tmp_path):
    from mstr.errors import DataError

    run(compose_cfg([*SMALL, "distill=none", "test=false", "plots=false"], out=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    cases = {  # override -> what the one-line refusal names (each leaf that differs, not two whole dicts)
        "model.backbone.widths=[8,16]": r"model\.backbone\.widths: checkpoint \[8, 8\] vs config \[8, 16\]\)",
        "loss=focal": r"loss\.name: checkpoint 'ce' vs config 'focal'",
        "distill=logits": r"trained without a teacher, the config distils \(add distill=none\)",
        "model=teacher": r"model\.role: checkpoint 'student' vs config 'teacher'; .*; and \d+ more\)",
    }
    for override, named in cases.items():
        out = tmp_path / override.split("=")[0]
        with pytest.raises(DataError, match=named):
            run(compose_cfg([*SMALL, "distill=none", override, f"ckpt_path={last}"], out=out))
        assert not (out / "teacher").exists() and not (out / "checkpoints").exists()  # refused before any work
    # on the command line, before Hydra makes a run dir (which then held a failed run's record)
    from mstr.config import compose_config
    from mstr.train import _prepare

    argv = [*SMALL, "distill=none", "loss=focal", f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'cli'}"]
    with pytest.raises(DataError, match=cases["loss=focal"]):
        _prepare(argv, compose_config("train", argv[:-1]))
    assert not (tmp_path / "cli").exists()
    # the data's part is checked once the data is read, by the same leaf-by-leaf rule
    with pytest.raises(DataError, match=r"data_signature\.window: checkpoint 8 vs config 4"):
        run(compose_cfg([*SMALL, "distill=none", "data.window=4", f"ckpt_path={last}"], out=tmp_path / "w"))
    resumed = run(compose_cfg([*SMALL, "distill=none", f"ckpt_path={last}"], out=tmp_path / "b"))
    assert resumed["test/f1"] > 0  # the same config resumes


@pytest.mark.slow
def test_a_resume_that_would_stretch_the_learning_rate_schedule_is_one_line_not_a_torch_traceback(
        compose_cfg, tmp_path):
    from mstr.errors import ConfigError, DataError

    args = ["data.source.n_flows=3000", "trainer.max_epochs=2", "trainer.limit_val_batches=2", "logger=csv",
            "trainer.enable_progress_bar=false", "distill=none", "test=false", "plots=false"]
    run(compose_cfg(args, out=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    # more epochs: refused before the data is read (torch stopped at the old schedule's last step)
    with pytest.raises(DataError, match=r"trainer\.max_epochs: checkpoint 2 vs config 3, and its learning-rate"):
        run(compose_cfg([*args, "trainer.max_epochs=3", f"ckpt_path={last}"], out=tmp_path / "b"))
    # fewer batches an epoch: the schedule's length is checked against the one the checkpoint holds
    with pytest.raises(ConfigError, match=r"schedule \(onecycle\) runs over \d+ steps, this config's over 6"):
        run(compose_cfg([*args, "trainer.limit_train_batches=3", f"ckpt_path={last}"], out=tmp_path / "c"))
    # a changed learning rate would be overwritten by the restored optimiser's
    with pytest.raises(DataError, match=r"model\.optim\.lr: checkpoint 0\.005 vs config 0\.01"):
        run(compose_cfg([*args, "model.optim.lr=0.01", f"ckpt_path={last}"], out=tmp_path / "d"))


def test_resume_config_check_compares_what_the_checkpoint_recorded():
    from mstr.errors import DataError
    from mstr.training.signature import check_resumable_config

    recorded = {"method": "logits", "teacher": "network", "temperature": 4.0}
    ckpt = {"hyper_parameters": {"role": "student", "backbone": {"widths": [8, 8], "window": 8},
                                 "optim": {"lr": 0.005}, "loss": {"name": "ce"}, "distill": recorded},
            "lr_schedulers": [{"total_steps": 140}], "max_epochs": 2}
    distill = {**recorded, "teacher_model": {"role": "teacher"}, "teacher_max_epochs": 2}  # the config holds more

    def check(**changed):
        args = dict(role="student", backbone={"widths": [8, 8]}, optim={"lr": 0.005}, loss={"name": "ce"},
                    distill=distill, max_epochs=2)
        check_resumable_config("last.ckpt", ckpt, **{**args, **changed})

    check()  # the window the data decides and the teacher's own settings are not the student's to compare
    with pytest.raises(DataError, match=r"\(distill\.temperature: checkpoint 4\.0 vs config 1\.0\)"):
        check(distill={**distill, "temperature": 1.0})
    with pytest.raises(DataError, match="the checkpoint's model was distilled, the config trains without a teacher"):
        check(distill=None)
    with pytest.raises(DataError, match=r"trainer\.max_epochs: checkpoint 2 vs config 4"):
        check(max_epochs=4)
    unscheduled = {k: v for k, v in ckpt.items() if k != "lr_schedulers"}  # model.optim.scheduler=none
    check_resumable_config("c.ckpt", unscheduled, "student", {"widths": [8, 8]}, {"lr": 0.005}, {"name": "ce"},
                           distill, 4)  # no schedule to stretch: more epochs resume
    before = {k: v for k, v in ckpt.items() if k != "max_epochs"}  # written before the epochs were recorded
    check_resumable_config("b.ckpt", before, "student", {"widths": [8, 8]}, {"lr": 0.005}, {"name": "ce"}, distill, 4)


def test_a_checkpoint_that_records_no_settings_is_refused_as_such_not_as_another_config(tmp_path):
    """A checkpoint of an older mstr (no data_signature, no optim) was refused as "trained with another
    config ... resume with the command that started the run", which the user had just done."""
    import torch

    from mstr.errors import DataError
    from mstr.training.module import FlowClassifier
    from mstr.training.signature import check_resumable, check_resumable_config

    module = FlowClassifier(num_features=6, num_classes=2, backbone={"token_dim": 2, "widths": [4]},
                            optim={"lr": 0.01}, loss={"name": "ce"}, class_names=["benign", "attack"],
                            data_signature={"window": 1})
    hp = dict(module.hparams)
    old = tmp_path / "old.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {**hp, "data_signature": None}}, old)
    with pytest.raises(DataError, match=r"old\.ckpt: cannot resume: the checkpoint records no data_signature "
                                        r"\(written by an older mstr.*start a new run"):
        check_resumable(old, module)
    no_optim = {"hyper_parameters": {k: v for k, v in hp.items() if k != "optim"}}
    with pytest.raises(DataError, match="records no optim "):
        check_resumable_config(old, no_optim, "model", hp["backbone"], hp["optim"], hp["loss"], None, 2)
    recorded = tmp_path / "new.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp}, recorded)
    check_resumable(recorded, module)  # everything recorded and equal: resumes


def test_a_fit_stopped_by_an_exception_ends_its_progress_bar_line(capsys):
    """A pruned sweep trial (optuna.TrialPruned raised at a validation end) left the bar's line open, and
    the sweep's summary was printed on the end of it."""
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from mstr.training.progress import SyncedProgressBar
    from mstr.training.runner import fit

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            return self.layer(batch[0]).sum()

        def validation_step(self, batch, _):
            return None

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Pruned(pl.Callback):
        def on_validation_end(self, trainer, module):
            if not trainer.sanity_checking:
                raise RuntimeError("pruned at epoch 0")

    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    data = pl.LightningDataModule.from_datasets(loader.dataset, loader.dataset, batch_size=4)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False,
                         callbacks=[SyncedProgressBar(refresh_rate=1), Pruned()])
    capsys.readouterr()
    with pytest.raises(RuntimeError, match="pruned"):
        fit(Tiny(), data, trainer)
    print("study done")
    out = capsys.readouterr().out
    assert "Epoch 0" in out and "\nstudy done" in out  # on a line of its own
