"""`mstr.evaluate` end to end on a checkpoint trained here (tiny synthetic run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from mstr.errors import ConfigError

TINY = ["data=synthetic", "data.source.n_flows=3000"]


def _compose(config_name: str, out: Path, overrides: list[str]):
    from mstr.config import compose_config

    return compose_config(config_name, [f"paths.output_dir={out}", *overrides])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    from mstr.train import run

    out = tmp_path_factory.mktemp("train")
    cfg = _compose("train", out, [*TINY, f"paths.teacher_cache_dir={out / 'teachers'}", "distill=none",
                                  "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
                                  "trainer.limit_train_batches=3", "logger=csv", "plots=false"])
    metrics = run(cfg)
    return Path(metrics["best_checkpoint"]), metrics


def _evaluate(ckpt: Path, out: Path, *overrides: str) -> dict:
    from mstr.evaluate import run

    return run(_compose("evaluate", out, [f"ckpt_path={ckpt}", *TINY, *overrides]))


def _scores(ckpt: Path, data_overrides: list[str], out: Path, fresh_fit: bool = False):
    """(val, test) probabilities and labels of the checkpoint, computed here independently."""
    from hydra.utils import instantiate

    from torch.utils.data import DataLoader

    from mstr.data.preprocessing import FlowPreprocessor
    from mstr.data.windows import FlowWindowDataset, collate_prebatched
    from mstr.training.checkpoint import load_classifier
    from mstr.training.evaluation import predict

    model = load_classifier(ckpt)
    dm = instantiate(_compose("evaluate", out, [*TINY, *data_overrides]).data)
    dm.setup()
    prep = dm.preprocessor if fresh_fit else FlowPreprocessor.from_dict(model.hparams["preprocessor"])
    return [predict(model, DataLoader(FlowWindowDataset.from_table(dm.tables[key], prep, dm.window),
                                      batch_size=512, collate_fn=collate_prebatched))
            for key in ("val", "test_synthetic")]


def test_metrics_reports_and_plots(trained, tmp_path):
    ckpt, train_metrics = trained
    metrics = _evaluate(ckpt, tmp_path, "threshold=tune")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("acc", "f1", "specificity", "fpr", "auroc", "precision", "recall"):
        # the same names and, on the same data, the same values as training's test metrics
        assert saved[f"test/{name}"] == pytest.approx(train_metrics[f"test/{name}"], abs=1e-6)
        assert f"tuned/test/{name}" in saved and f"val/{name}" in saved
    assert saved == pytest.approx(json.loads(json.dumps(metrics)))
    for png in ("confusion_matrix", "confusion_matrix_tuned", "roc", "pr"):
        data = (tmp_path / f"{png}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    report = pd.read_csv(tmp_path / "per_class.csv")
    default = report[report["threshold"].astype(str) == "0.5"].set_index("class")
    assert list(default.index) == ["benign", "attack", "macro avg", "weighted avg"]
    assert default.loc["benign", "support"] + default.loc["attack", "support"] == 900  # 30% of 3,000
    assert default.loc["attack", "recall"] == pytest.approx(saved["test/recall"], abs=1e-6)
    assert "| attack |" in (tmp_path / "per_class.md").read_text()


def test_without_data_it_scores_on_the_data_its_run_trained_on(trained, tmp_path):
    """The run's .hydra/config.yaml says the data (here 3,000 generated flows, not the config's default
    30,000), and a run dir stands for its best checkpoint; a checkpoint alone must be told the data."""
    import shutil

    from mstr.evaluate import run

    ckpt, train_metrics = trained
    metrics = run(_compose("evaluate", tmp_path / "own", [f"ckpt_path={ckpt.parent.parent}"]))
    for name in ("acc", "auroc", "f1"):
        assert metrics[f"test/{name}"] == pytest.approx(train_metrics[f"test/{name}"], abs=1e-6)
    assert metrics["audit/checkpoint_dev_rows_match"] is True
    alone = tmp_path / "alone.ckpt"
    shutil.copy(ckpt, alone)
    with pytest.raises(ConfigError, match=r"alone.ckpt: no run config beside it .* give the data to score on: "
                                          r"data=<name>"):
        run(_compose("evaluate", tmp_path / "alone", [f"ckpt_path={alone}"]))


def test_threshold_is_tuned_on_validation_never_on_test(trained, tmp_path):
    from mstr.scoring import tune_threshold

    ckpt, _ = trained
    metrics = _evaluate(ckpt, tmp_path, "threshold=tune")
    (val_p, val_y), (test_p, test_y) = _scores(ckpt, [], tmp_path / "x")
    from_val, _ = tune_threshold(val_p[:, 1].numpy(), val_y.numpy())
    from_test, best_test_f1 = tune_threshold(test_p[:, 1].numpy(), test_y.numpy())
    assert metrics["tuned/threshold"] == pytest.approx(from_val)
    assert metrics["tuned/threshold"] != pytest.approx(from_test)
    # the tuned test metrics apply the validation threshold to test as `score > threshold`
    expected = f1_score(test_y.numpy(), test_p[:, 1].numpy() > from_val)
    assert metrics["tuned/test/f1"] == pytest.approx(expected, abs=1e-6)
    assert metrics["tuned/test/f1"] <= best_test_f1 + 1e-9


def test_scores_with_the_checkpoints_preprocessing_not_a_new_fit(trained, tmp_path):
    """Other traffic (generator seed 1): a fit on it would scale differently than training did."""
    from mstr.training.evaluation import score_sets

    ckpt, _ = trained
    data = ["data.source.seed=1"]
    metrics = _evaluate(ckpt, tmp_path, *data)
    _, (test_p, test_y) = _scores(ckpt, data, tmp_path / "a")
    _, (fresh_p, _) = _scores(ckpt, data, tmp_path / "b", fresh_fit=True)
    expected = score_sets({"synthetic": (test_p, test_y)}, 2)
    assert metrics["test/auroc"] == pytest.approx(expected["test/auroc"], abs=1e-6)
    assert not torch.allclose(test_p, fresh_p, atol=1e-4)


def test_threshold_is_never_tuned_on_rows_other_than_the_training_runs_validation(trained, tmp_path):
    """Other traffic: its validation carve is not the one the model was kept out of, so it may hold rows
    (or copies of rows) the model trained on."""
    ckpt, _ = trained
    with pytest.raises(ConfigError, match="threshold=tune: .* not the ones .* learnt from"):
        _evaluate(ckpt, tmp_path, "threshold=tune", "data.source.seed=1")


def test_tuning_on_another_validation_carve_names_what_changed_it(trained, tmp_path):
    """The same train + validation rows carved by another data.val_fraction: refused, naming that key,
    not a seed override that was never given."""
    ckpt, _ = trained
    with pytest.raises(ConfigError, match=r"^threshold=tune: data.val_fraction=0.3 \(or another data.\* override\) "
                                          r"carves another validation split") as err:
        _evaluate(ckpt, tmp_path / "fraction", "threshold=tune", "data.val_fraction=0.3")
    assert "seed=" not in str(err.value)


def test_tuning_a_checkpoint_that_does_not_record_its_validation_rows_says_so(trained, tmp_path):
    """A checkpoint of an older mstr (no val_rows / seed in its data signature) was refused for
    threshold=tune as if a seed override had carved another validation split."""
    ckpt, _ = trained
    old = ckpt.parent / "old.ckpt"  # beside best.ckpt: its run config is found
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    for key in ("val_rows", "seed"):
        state["hyper_parameters"]["data_signature"].pop(key)
    torch.save(state, old)
    try:
        with pytest.raises(ConfigError, match=r"^threshold=tune: .*old.ckpt does not record which rows .* older mstr"):
            _evaluate(old, tmp_path, "threshold=tune")
    finally:
        old.unlink()


def test_tuning_on_rows_changed_by_an_override_of_the_runs_own_data_names_the_override(trained, tmp_path):
    """Without data=<name> the rows changed through a data.* override of the run's own config: the
    refusal said 'leave data= out', which was never given."""
    from mstr.evaluate import run

    ckpt, _ = trained
    with pytest.raises(ConfigError, match=r"not the ones .* learnt from, .*; drop data.source.seed or use a fixed "
                                          r"threshold$"):
        run(_compose("evaluate", tmp_path, [f"ckpt_path={ckpt}", "threshold=tune", "+data.source.seed=1"]))


def test_val_metrics_on_another_carve_of_the_same_rows_are_flagged(trained, tmp_path, caplog):
    """data.val_fraction (or a seed) cuts the checkpoint's own train + validation rows elsewhere: the
    reported val/... then cover rows the model trained on, which nothing said."""
    ckpt, _ = trained
    assert _evaluate(ckpt, tmp_path / "own")["audit/checkpoint_val_rows_match"] is True
    metrics = _evaluate(ckpt, tmp_path / "other", "data.val_fraction=0.3")
    assert metrics["audit/checkpoint_dev_rows_match"] is True
    assert metrics["audit/checkpoint_val_rows_match"] is False
    assert "val/... metrics overstate the model" in caplog.text


def test_the_teacher_a_run_trained_on_the_way_scores_on_the_runs_own_data(trained, tmp_path):
    """<run>/teacher has no config of its own: it was refused with 'no run config beside it', though
    it learnt from exactly the run's data."""
    import shutil

    from mstr.evaluate import run

    ckpt, train_metrics = trained
    copy = shutil.copytree(ckpt.parent.parent, tmp_path / "run")
    (copy / "teacher" / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, copy / "teacher" / "checkpoints" / "best.ckpt")  # a stand-in for the teacher's own
    metrics = run(_compose("evaluate", tmp_path / "out", [f"ckpt_path={copy / 'teacher'}", "threshold=tune"]))
    assert metrics["test/f1"] == pytest.approx(train_metrics["test/f1"], abs=1e-6)
    assert metrics["audit/checkpoint_dev_rows_match"] is True


@pytest.mark.slow
def test_bad_requests_are_one_line_errors(trained, tmp_path):
    ckpt, _ = trained
    with pytest.raises(ConfigError, match="ckpt_path=None: give an existing checkpoint"):
        _evaluate(Path("null"), tmp_path)
    with pytest.raises(ConfigError, match="threshold='best'"):
        _evaluate(ckpt, tmp_path, "threshold=best")
    for device in ("foo", "mps"):  # torch's own error (a traceback), or a device this command cannot use
        with pytest.raises(ConfigError, match=rf"^device={device}: use device=cpu or device=cuda"):
            _evaluate(ckpt, tmp_path, f"device={device}")
    env = {**os.environ, "MSTR_LOG_DIR": str(tmp_path / "logs")}
    proc = subprocess.run([sys.executable, "-m", "mstr.evaluate", f"ckpt_path={ckpt}", *TINY,
                           "data.task=multiclass"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "classes: preprocessing ['benign', 'attack'] vs data" in errors[0]
    assert "Traceback" not in proc.stderr


def test_a_run_dir_without_a_best_checkpoint_says_the_run_did_not_get_that_far(tmp_path):
    """A run stopped during its teacher (or still training) has a dir but no best.ckpt: evaluate, export
    and detect say so and how to finish it, not that the path does not exist."""
    from mstr.detect import open_detector
    from mstr.errors import DataError
    from mstr.export import run as export

    run_dir = tmp_path / "run"
    (run_dir / "teacher" / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "config_key.txt").write_text("0123abcd\n")
    said = r"this run dir holds no checkpoints/best.ckpt yet: .* train command plus resume=auto"
    with pytest.raises(ConfigError, match=rf"^ckpt_path={run_dir}: {said}"):
        _evaluate(run_dir, tmp_path / "evaluate")
    with pytest.raises(ConfigError, match=rf"^ckpt_path={run_dir}: {said}"):
        export(_compose("export", tmp_path / "export", [f"ckpt_path={run_dir}"]))
    with pytest.raises(DataError, match=rf"^--model {run_dir}: {said}"):
        open_detector(str(run_dir), threads=1, max_groups=10)
    best = run_dir / "checkpoints" / "best.ckpt"  # the form the README shows
    with pytest.raises(ConfigError, match=rf"^ckpt_path={best}: {said}"):
        _evaluate(best, tmp_path / "evaluate")
    with pytest.raises(DataError, match=rf"^--model {best}: {said}"):
        open_detector(str(best), threads=1, max_groups=10)
    (run_dir / "job_error.json").write_text(json.dumps({"error": "x.csv: data row 3 has 2 fields", "user_error": True}))
    with pytest.raises(ConfigError, match=rf"^ckpt_path={run_dir}: this run failed before it kept a best checkpoint "
                                          r"\(x.csv: data row 3 has 2 fields\); fix that and train again$"):
        _evaluate(run_dir, tmp_path / "evaluate")
    (run_dir / "job_error.json").unlink()
    (run_dir / "metrics.json").write_text("{}")  # finished, yet no best.ckpt: debug=fast keeps none
    with pytest.raises(ConfigError, match=rf"^ckpt_path={run_dir}: this run finished without keeping a best "
                                          r"checkpoint \(a debug=fast run keeps none\)"):
        _evaluate(run_dir, tmp_path / "evaluate")
    with pytest.raises(ConfigError, match=rf"^ckpt_path={tmp_path / 'nothing'}: give an existing checkpoint file"):
        _evaluate(tmp_path / "nothing", tmp_path / "evaluate")


def test_metrics_a_set_cannot_define_are_left_out_not_reported_as_zero(caplog):
    """A capture of benign traffic alone has no attack recall or AUROC: torchmetrics says 0 for both,
    which reads as a detector that misses everything; they are left out, with a warning saying why."""
    from sklearn.metrics import roc_auc_score

    from mstr.training.evaluation import score

    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.8, 0.2]])
    benign_only = score(probs, torch.tensor([0, 0, 0]), 2, "test_capture/")
    assert set(benign_only) == {"test_capture/acc", "test_capture/precision", "test_capture/specificity",
                                "test_capture/fpr"}
    assert benign_only["test_capture/specificity"] == pytest.approx(2 / 3)
    assert benign_only["test_capture/precision"] == 0.0  # one flow flagged, wrongly: defined, and 0
    assert "no attack flows" in caplog.text and "recall, f1, auroc" in caplog.text
    attacks_only = score(probs, torch.tensor([1, 1, 1]), 2, "test/")
    assert {"test/specificity", "test/fpr", "test/auroc"}.isdisjoint(attacks_only)
    assert attacks_only["test/recall"] == pytest.approx(1 / 3)
    both = score(probs, torch.tensor([0, 1, 0]), 2, "test/")
    assert both["test/auroc"] == 1.0 and both["test/f1"] == 1.0
    # multi-class: the macro AUROC over the classes the set holds, not a 0 for the absent one
    probs3 = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.3, 0.6, 0.1]])
    labels3 = torch.tensor([0, 1, 1, 0])
    expected = (roc_auc_score(labels3 == 0, probs3[:, 0]) + roc_auc_score(labels3 == 1, probs3[:, 1])) / 2
    assert score(probs3, labels3, 3, "test/")["test/auroc"] == pytest.approx(expected)
    assert "test/auroc" not in score(probs3, torch.tensor([2, 2, 2, 2]), 3, "test/")


def test_validation_auroc_of_a_multiclass_run_averages_the_classes_validation_holds():
    """A class too rare for the validation carve (3 rows: none held out) has no AUROC there; the
    training loop's val/auroc (val/auroc_best in metrics.json, an objective a sweep may take) averaged
    a 0 in for it, as if the model ranked that class perfectly wrong."""
    from sklearn.metrics import roc_auc_score

    from mstr.training.metrics import compute_with_fpr, detection_metrics

    probs = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.3, 0.6, 0.1]])
    labels = torch.tensor([0, 1, 1, 0])
    collection = detection_metrics(3, "val/")
    for batch in (slice(0, 2), slice(2, 4)):  # updated batch by batch, as validation steps do
        collection.update(probs[batch], labels[batch])
    expected = (roc_auc_score(labels == 0, probs[:, 0]) + roc_auc_score(labels == 1, probs[:, 1])) / 2
    assert compute_with_fpr(collection)["val/auroc"] == pytest.approx(expected)


def test_a_multiclass_model_also_reports_the_alerts_its_detector_raises():
    """The detector flags a flow when 1 - P(benign) exceeds 0.5, not when an attack class is the most
    likely: a benign flow at 0.45 / 0.30 / 0.25 is right by argmax and an alert all the same. The macro
    FPR cannot show that; `test/alerts/...` does."""
    from mstr.training.evaluation import as_alerts, score_sets

    probs = torch.tensor([[0.45, 0.30, 0.25], [0.90, 0.05, 0.05], [0.10, 0.80, 0.10], [0.40, 0.10, 0.50],
                          [0.60, 0.30, 0.10]])
    labels = torch.tensor([0, 0, 1, 2, 2])
    alert_probs, alert_labels = as_alerts(probs, labels, benign_classes=1)
    assert alert_labels.tolist() == [0, 0, 1, 1, 1]
    assert alert_probs[:, 1].tolist() == pytest.approx([0.55, 0.10, 0.90, 0.60, 0.40])
    metrics = score_sets({"t": (probs, labels)}, 3)
    assert metrics["test/acc"] == pytest.approx(4 / 5)  # argmax: only the last flow is wrong
    assert metrics["test/alerts/fpr"] == pytest.approx(1 / 2)  # the first benign flow raises an alert
    assert metrics["test/alerts/recall"] == pytest.approx(2 / 3) and metrics["test/alerts/acc"] == pytest.approx(3 / 5)
    # two benign classes (both first): their probabilities add up before the attack score is taken
    two = as_alerts(torch.tensor([[0.3, 0.3, 0.4]]), torch.tensor([1]), benign_classes=2)
    assert two[0][0].tolist() == pytest.approx([0.6, 0.4]) and two[1].tolist() == [0]
    assert not any("/alerts/" in k for k in score_sets({"t": (alert_probs, alert_labels)}, 2))  # binary: no copy


def test_known_attack_recall_covers_only_the_types_training_had():
    """An attack type that validation holds and training lacks (as `data.val_unseen_types` makes them)
    is not new to the development rows, so not in `test/novel_attack_recall`; nor did the model learn
    it, so not in `test/known_attack_recall` either (it was counted there)."""
    import numpy as np

    from mstr.data.datamodule import FlowDataModule
    from mstr.data.datasets import DatasetSplits
    from mstr.data.table import FlowTable
    from mstr.training.evaluation import score_sets

    def table(types):
        frame = pd.DataFrame({"x": np.arange(len(types), dtype=float), "attack_type": types})
        frame["label"] = np.where(frame["attack_type"] == "normal", "normal", "attack")
        return FlowTable(frame, ["x"], [], benign=("normal",), family_col="attack_type")

    train = table(["normal"] * 6 + ["neptune"] * 4)
    val = table(["normal"] * 2 + ["neptune", "guess_passwd"])
    test = table(["normal"] * 2 + ["neptune"] * 3 + ["guess_passwd"] * 2 + ["xterm"])
    dm = FlowDataModule(lambda: DatasetSplits(train=train, tests={"t": test}, val=val), window=1)
    dm.setup()
    flagged_all = torch.tensor([[0.9, 0.1]] * 2 + [[0.1, 0.9]] * 3 + [[0.9, 0.1]] * 2 + [[0.1, 0.9]])
    metrics = score_sets({"t": (flagged_all, torch.tensor(dm.dataset("test_t").labels))}, 2,
                         subsets=dm.test_subsets())
    assert metrics["test/novel_attack_rows"] == 1 and metrics["test/novel_attack_recall"] == 1.0  # xterm
    assert metrics["test/known_attack_rows"] == 3 and metrics["test/known_attack_recall"] == 1.0  # neptune


def test_a_data_root_given_on_the_command_line_is_read_even_where_the_runs_own_folder_still_is(tmp_path):
    """The run's own data folder wins only over the command's default; `paths.data_dir=` given on
    evaluate's (or baselines') command line is where the data is read, as the README says."""
    from mstr.training.export import trained_on

    own, given = tmp_path / "own", tmp_path / "given"
    own.mkdir()
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text(f"paths:\n  data_dir: {own}\ndata:\n  name: nsl_kdd\n"
                                                              "seed: 0\n")
    assert trained_on(tmp_path / "run", str(given)).paths.data_dir == str(own)
    assert trained_on(tmp_path / "run", str(given), data_dir_given=True).paths.data_dir == str(given)
    own.rmdir()  # another machine: the command's folder
    assert trained_on(tmp_path / "run", str(given)).paths.data_dir == str(given)


def test_a_seed_that_is_not_an_integer_is_one_line_before_any_work(tmp_path):
    """The seed carves validation: a bad one failed inside numpy's SeedSequence with a traceback."""
    from mstr.evaluate import run

    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"not read: the seed is checked first")
    for seed in ("abc", "-1", "true", "1.5"):
        with pytest.raises(ConfigError, match=r"^seed=.*: must be an integer >= 0, or leave it out"):
            run(_compose("evaluate", tmp_path / seed, [f"ckpt_path={ckpt}", f"seed={seed}"]))


def test_a_runs_relative_flow_files_are_read_where_the_run_was_started(tmp_path):
    """data=flows data.path=flows.csv, trained in one folder: evaluate / baselines run= from another
    looked for flows.csv there ('no such file or folder')."""
    from omegaconf import OmegaConf

    from mstr.training.export import trained_on

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save({"seed": 0, "paths": {"data_dir": str(tmp_path)},
                    "data": {"name": "flows", "path": "captures/flows.csv", "test_path": "/abs/test.csv"}},
                   run / ".hydra" / "config.yaml")
    OmegaConf.save({"hydra": {"runtime": {"cwd": "/home/me/project"}}}, run / ".hydra" / "hydra.yaml")
    data = trained_on(run, str(tmp_path)).data
    assert data.path == "/home/me/project/captures/flows.csv"
    assert data.test_path == "/abs/test.csv"
