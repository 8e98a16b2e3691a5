"""Classic baselines on a small real slice of NSL-KDD, on the DataModule's own splits."""

from __future__ import annotations

import gzip
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from mstr.errors import ConfigError


@pytest.fixture(scope="module")
def nsl_slice(tmp_path_factory, data_dir) -> Path:
    """The first 4,000 KDDTrain+_20Percent and 3,000 KDDTest+ records, in the loader's layout."""
    root = tmp_path_factory.mktemp("data")
    (root / "nsl_kdd").mkdir()
    for name, n in (("KDDTrain+_20Percent", 4000), ("KDDTest+", 3000)):
        with gzip.open(data_dir / "nsl_kdd" / f"{name}.txt.gz", "rt") as fh:
            lines = [next(fh) for _ in range(n)]
        (root / "nsl_kdd" / f"{name}.txt").write_text("".join(lines))
    return root


@pytest.fixture(scope="module")
def nsl_dm(nsl_slice):
    from mstr.data.datamodule import FlowDataModule
    from mstr.data.datasets import nsl_kdd

    dm = FlowDataModule(partial(nsl_kdd.load, nsl_slice, variant="20percent"), name="nsl_kdd",
                        window=1, max_categories=80)
    dm.setup()
    return dm


def test_peers_on_the_same_splits(nsl_dm):
    from mstr.peers import run_peers

    # one thread: the boosters' OpenMP threads crawl on a 2-core box that other jobs share
    results = run_peers(nsl_dm, ["majority", "stump", "logreg", "lightgbm"], seed=0, n_jobs=1)
    assert list(results) == ["majority", "stump", "logreg", "lightgbm"]
    test = nsl_dm.tables["test_KDDTest+"]
    assert nsl_dm.train_labels().mean() < 0.5  # benign is the majority class of the training split
    majority = results["majority"]
    assert majority["test/f1"] == 0.0 and majority["test/recall"] == 0.0
    assert majority["test/auroc"] == pytest.approx(0.5)
    # scored on the DataModule's own test split: predicting "benign" is right on its benign share
    assert majority["test/acc"] == pytest.approx(1.0 - test.is_attack().mean(), abs=1e-6)
    for model in ("stump", "logreg", "lightgbm"):
        assert results[model]["test/f1"] > 0.5, model
    assert results["lightgbm"]["test/f1"] > majority["test/f1"]
    assert results["lightgbm"]["test/auroc"] > 0.85
    assert all(np.isfinite(v) for r in results.values() for v in r.values())
    assert {"test/acc", "test/f1", "test/specificity", "test/fpr", "test/auroc", "test/precision",
            "test/recall", "time/fit_s", "test/novel_attack_recall", "test/known_attack_recall",
            "test/novel_attack_rows", "test/known_attack_rows", "test/copied_rows", "test/copied_rows_acc",
            "test/fresh_rows_acc"} == set(majority)
    # KDDTest+ attack types absent from the training rows are counted apart from the known ones
    train_types = set(nsl_dm.tables["train"].frame["attack_type"]) | set(nsl_dm.tables["val"].frame["attack_type"])
    novel = test.is_attack() & ~test.frame["attack_type"].isin(train_types).to_numpy()
    assert majority["test/novel_attack_rows"] == novel.sum() > 0
    assert majority["test/novel_attack_rows"] + majority["test/known_attack_rows"] == test.is_attack().sum()
    assert majority["test/novel_attack_recall"] == 0.0
    assert 0.0 < results["lightgbm"]["test/novel_attack_recall"] < results["lightgbm"]["test/known_attack_recall"]
    # accuracy splits into rows with a feature-identical training row (scorable by memory) and the rest
    lgbm, copied = results["lightgbm"], results["lightgbm"]["test/copied_rows"]
    assert copied == nsl_dm.audit["dup_train_KDDTest+"] > 0
    assert (lgbm["test/copied_rows_acc"] * copied + lgbm["test/fresh_rows_acc"] * (len(test) - copied)
            == pytest.approx(lgbm["test/acc"] * len(test)))


def test_entry_point_writes_prefixed_metrics(nsl_slice, tmp_path, compose_cfg):
    from mstr.baselines import run

    overrides = [f"paths.data_dir={nsl_slice}", "data=nsl_kdd", "data.variant=20percent", "baselines.n_jobs=1",
                 "baselines.models=[majority,xgboost]"]
    cfg = compose_cfg(overrides, "baselines", out=tmp_path)
    bad = compose_cfg([*overrides[:-1], "baselines.models=[svm]"], "baselines", out=tmp_path)
    run(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["majority/test/f1"] == 0.0 and saved["xgboost/test/f1"] > 0.5
    assert "xgboost/time/fit_s" in saved and "audit/dup_train_KDDTest+" in saved
    assert saved["data/window"] == 1 and "data/window_note" not in saved  # data=nsl_kdd asks for 1
    with pytest.raises(ConfigError, match=r"baselines.models=\['svm'\]: no model 'svm'; choose from"):
        run(bad)


@pytest.mark.slow
def test_peers_beside_a_run_record_the_runs_data_in_their_config(nsl_slice, tmp_path, compose_cfg):
    """`run=<run>` reads that run's data config and seed; the job's `.hydra/config.yaml`, which Hydra writes
    with the default data (synthetic) before the run is read, must name what was read, for `mstr.compare`
    and anyone reading the dir."""
    from omegaconf import OmegaConf

    from mstr.baselines import run

    trained = compose_cfg([f"paths.data_dir={nsl_slice}", "data=nsl_kdd", "data.variant=20percent", "seed=3"],
                          out=tmp_path / "run")
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    OmegaConf.save(trained, tmp_path / "run" / ".hydra" / "config.yaml")
    cfg = compose_cfg([f"run={tmp_path / 'run'}", "baselines.models=[majority]", "baselines.n_jobs=1"],
                      "baselines", out=tmp_path / "peers")
    (tmp_path / "peers" / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, tmp_path / "peers" / ".hydra" / "config.yaml")  # as Hydra writes it
    run(cfg)
    recorded = OmegaConf.load(tmp_path / "peers" / ".hydra" / "config.yaml")
    assert (recorded.data.name, recorded.data.variant, recorded.seed) == ("nsl_kdd", "20percent", 3)
    assert recorded.run == str(tmp_path / "run")


def test_novelty_gate_flags_far_flows_at_its_validation_budget(nsl_dm):
    """The gate's threshold lets through (1 - fpr) of benign validation flows; flows far from the benign
    training flows score above 0.5; the gated detector never lowers P(attack)."""
    from mstr.models import build_backbone
    from mstr.models.novelty import GatedDetector
    from mstr.training.novelty import fit_gate

    gate = fit_gate(nsl_dm, 0.05)
    val = nsl_dm.dataset("val")
    benign = val.features[val.labels == 0].unsqueeze(1)
    flagged = (gate.score(benign) > 0.5).float().mean().item()
    assert 0.02 < flagged <= 0.06
    assert (gate.score(benign[:5] + 50.0) > 0.9).all()
    assert len(gate.columns) == sum("#bin" not in n for n in nsl_dm.preprocessor.feature_names)
    from mstr.training.novelty import gate_columns

    # bins and frequent-value indicators only re-encode a value the gate already measures
    assert gate_columns(["ttl", "ttl#bin1", "ttl#is254", "proto=tcp"]) == [0, 3]
    classifier = build_backbone(nsl_dm.num_features, 2, token_dim=2, widths=[4]).eval()
    x, _ = nsl_dm.dataset("test_KDDTest+").gather(torch.arange(200))
    with torch.no_grad():
        alone = classifier(x).softmax(-1)[:, 1]
        gated = GatedDetector(classifier, gate)(x).exp()[:, 1]
    assert torch.allclose(gated, torch.maximum(alone, gate.score(x)), atol=1e-5)


def test_a_window_on_rows_without_time_order_becomes_one_flow_and_says_so(nsl_slice, caplog):
    from mstr.data.datamodule import FlowDataModule
    from mstr.data.datasets import nsl_kdd

    dm = FlowDataModule(partial(nsl_kdd.load, nsl_slice, variant="20percent"), name="nsl_kdd", window=8,
                        max_categories=80)
    with caplog.at_level("WARNING", logger="mstr.data.datamodule"):
        dm.setup()
    assert dm.window == 1 and dm.dataset("train").window == 1
    assert dm.facts["data/window"] == 1 and "data.window=8 -> 1" in dm.facts["data/window_note"]
    assert any("data.window=8 -> 1" in r.getMessage() for r in caplog.records)


def test_bad_models_or_n_jobs_stop_the_command_line_with_one_line(tmp_path, monkeypatch, capsys, compose_cfg):
    """Checked before Hydra makes a run dir: n_jobs=0 used to reach joblib (a traceback), and a plain
    name was split into its letters."""
    import sys

    from mstr.baselines import checked, main

    monkeypatch.chdir(tmp_path)
    for bad, message in (("baselines.n_jobs=0", "baselines.n_jobs=0: give the threads"),
                         ("baselines.n_jobs=two", "a nonzero integer (-1: all cores)"),
                         ("baselines.models=svm", "baselines.models=['svm']: no model 'svm'; choose from"),
                         # the one misspelt among several is named, with the model meant
                         ("baselines.models=[majority,xgbost]", "no model 'xgbost'; choose from ['majority', "),
                         ("baselines.models=[majority,xgbost]", "; did you mean xgboost?"),
                         ("baselines.models=[]", "baselines.models=[]: name at least one"),
                         ("baselines.models=3", "give a list of names, e.g. baselines.models=[majority"),
                         ("seed=-5", "seed=-5: must be an integer >= 0")):  # was numpy's traceback
        monkeypatch.setattr(sys, "argv", ["mstr.baselines", "data=nsl_kdd", bad, "baselines.models=[random_forest]"
                                          if "n_jobs" in bad else "baselines.n_jobs=1"])
        with pytest.raises(SystemExit) as stop:
            main()
        err = capsys.readouterr().err
        assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    run_dir = tmp_path / "run" / ".hydra"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 0\ndata: {_target_: mstr.data.datamodule.FlowDataModule}\n")
    for extra in ("seed=4", "data=synthetic", "data.window=1"):  # silently ignored before
        key = extra.split("=")[0]
        monkeypatch.setattr(sys, "argv", ["mstr.baselines", f"run={tmp_path / 'run'}", extra])
        with pytest.raises(SystemExit) as stop:
            main()
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith(f"error: {key} with run=: the peers take the run's own"), err
    (tmp_path / "run" / ".hydra" / "config.yaml").unlink()
    (tmp_path / "run" / ".hydra").rmdir()
    (tmp_path / "run").rmdir()
    assert list(tmp_path.iterdir()) == []  # no run dir, no log
    cfg = compose_cfg(["baselines.models=majority", "baselines.n_jobs=-1"], "baselines", out=tmp_path)
    assert checked(cfg) == (["majority"], -1)  # a single name is a list of one


def test_the_table_shows_a_metric_the_test_set_cannot_define_as_a_dash(tmp_path, capsys):
    """On a test set of attacks alone specificity, FPR and AUROC are left out of the metrics: printing
    the table then failed with a KeyError traceback after metrics.json was written."""
    from mstr.baselines import _print_comparison

    results = {"stump": {"test/acc": 0.79, "test/precision": 1.0, "test/recall": 0.79, "test/f1": 0.88,
                         "time/fit_s": 0.1}}
    _print_comparison(results, "baselines on nsl_kdd (test)", tmp_path / "metrics.json")
    row = next(line for line in capsys.readouterr().out.splitlines() if "stump" in line)
    assert "0.8800" in row and row.count(" - ") == 3


def test_a_multiclass_table_shows_the_share_of_benign_flows_each_model_would_flag(tmp_path, capsys):
    """Multi-class metrics are macro averages: the table showed only a macro FPR (0.0041 below) while the
    alerts' own FPR, the share of benign flows a detector would flag, was in metrics.json alone."""
    from mstr.baselines import _print_comparison

    macro = {"test/acc": 0.95, "test/precision": 0.9, "test/recall": 0.91, "test/f1": 0.93,
             "test/specificity": 0.9959, "test/fpr": 0.0041, "test/auroc": 0.99, "time/fit_s": 2.0}
    results = {"xgboost": {**macro, "test/alerts/fpr": 0.0193, "test/alerts/recall": 0.9964}}
    _print_comparison(results, "baselines on cic_ids2017 (test)", tmp_path / "metrics.json")
    out = capsys.readouterr().out
    assert "alerts: attack vs benign" in out and "alerts fpr" in out and "…" not in out  # no name cut
    row = next(line for line in out.splitlines() if "xgboost" in line)
    assert "0.0041" in row and "0.0193" in row and "0.9964" in row
    _print_comparison({"stump": macro}, "binary", tmp_path / "metrics.json")
    assert "alerts" not in capsys.readouterr().out  # binary: its FPR is the alerts'


def test_a_dir_that_is_not_a_training_runs_is_refused_as_run_before_any_work(tmp_path, monkeypatch, capsys):
    """An evaluate job's dir has a .hydra/config.yaml too, with data: null and seed: null: run= on it
    failed in int(None) with a traceback, after making a run dir."""
    import sys

    from mstr.baselines import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval" / ".hydra").mkdir(parents=True)
    (tmp_path / "eval" / ".hydra" / "config.yaml").write_text("task_name: evaluate\nseed: null\ndata: null\n")
    monkeypatch.setattr(sys, "argv", ["mstr.baselines", f"run={tmp_path / 'eval'}", "baselines.models=[majority]"])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "its .hydra/config.yaml holds no training run's data config and seed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no job dir made
