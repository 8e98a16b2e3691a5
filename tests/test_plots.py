"""The benchmarks' plots: what each panel and series holds (the figure is inspected, not the pixels)."""

from __future__ import annotations

import pytest

from mstr import plots


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """The figure a plot function saves, caught instead of the file."""
    saved: dict = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.update(fig=fig, path=path))
    return saved


def test_the_traffic_loss_plot_has_a_panel_per_attack_share_with_each_part_and_the_total(drawn, tmp_path):
    levels = [(0.9, 2.0, 55.0, 0.1, 13.0), (0.1, 0.5, 0.0, 2.5, 3.2), (0.1, 2.0, 59.6, 1.0, 1.3),
              (0.9, 0.5, 0.0, 0.2, 29.2)]
    plots.traffic_loss(levels, tmp_path / "loss.png", "loss")
    fig = drawn["fig"]
    assert [ax.get_title() for ax in fig.axes] == ["10% attacks", "90% attacks"]
    lines = {line.get_label(): line for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}
    assert list(lines) == ["dropped unread", "benign flagged", "attacks missed", "total loss"]
    assert lines["total loss"].get_xdata().tolist() == [0.5, 2.0]  # in rate order, whatever the input's
    assert lines["total loss"].get_ydata().tolist() == pytest.approx([5.7, 61.9])
    assert fig.axes[1].get_lines()[1].get_ydata().tolist() == pytest.approx([0.2, 0.1])


def test_the_speed_plot_has_a_bar_per_model_and_runtime_in_the_tables_order(drawn, tmp_path):
    measured = {("student", "ONNX Runtime"): (855_000.0, 0.037, 0.079),
                ("xgboost", "predict_proba"): (442_000.0, 0.276, 0.534)}
    plots.speed(measured, tmp_path / "speed.png", "KDDTest+")
    rate_ax, latency_ax = drawn["fig"].axes[:2]
    assert [t.get_text() for t in rate_ax.get_yticklabels()] == ["student (ONNX Runtime)", "xgboost (predict_proba)"]
    assert [bar.get_width() for bar in rate_ax.patches] == [855_000.0, 442_000.0]
    p50, p99 = latency_ax.containers
    assert [bar.get_width() for bar in p50] == [0.037, 0.276] and [bar.get_width() for bar in p99] == [0.079, 0.534]
    assert rate_ax.get_xscale() == latency_ax.get_xscale() == "log"


def test_the_ablation_forest_plot_shows_each_variants_per_seed_differences_to_the_default(drawn, tmp_path):
    from mstr.bench import ablation

    def run(acc, val):
        return {"test/acc": acc, "val/f1_best": val}

    results = {"nsl_kdd": {"student_nokd": [run(0.80, 0.990), run(0.82, 0.992)],
                           "linear stem": [run(0.78, 0.985), run(0.83, 0.991)],
                           "student_logits": []},  # a variant with no finished run is not drawn
               "unsw_nb15": {"student_nokd": [run(0.975, 0.978)]}}  # nothing but the default: no panel
    deltas = ablation.deltas(results)
    assert deltas["nsl_kdd"] == [("linear stem", pytest.approx([-0.02, 0.01]), pytest.approx([-0.005, -0.001]))]
    plots.ablation(deltas, tmp_path / "ablation.png", "ablation")
    (ax,) = drawn["fig"].axes
    assert ax.get_title() == "nsl_kdd" and [t.get_text() for t in ax.get_yticklabels()] == ["linear stem"]
    per_seed = ax.get_lines()[0]
    assert per_seed.get_xdata().tolist() == pytest.approx([-0.02, 0.01])
    test_mean, val_mean = (container.lines[0].get_xdata()[0] for container in ax.containers)
    assert test_mean == pytest.approx(-0.005) and val_mean == pytest.approx(-0.003)


def test_the_accuracy_plot_shows_each_models_seeds_beside_the_peers(drawn, tmp_path):
    from mstr.bench.__main__ import accuracy_scores

    def run(acc, teacher):
        return {"test/acc": acc, "teacher/test/acc": teacher}

    results = {"nsl_kdd": {"student_logits": [run(0.81, 0.80), run(0.83, 0.79)], "student_nokd": []}}
    peers = {"nsl_kdd": {"xgboost": [{"test/acc": 0.793}, {"test/acc": 0.793}]}}
    scores = accuracy_scores(results, peers)
    assert scores["nsl_kdd"][:3] == [("teacher (mstr)", [0.80, 0.79]), ("student, distilled (mstr)", [0.81, 0.83]),
                                     ("student, no KD (mstr)", [])]
    plots.accuracy(scores, tmp_path / "accuracy.png", "accuracy")
    (ax,) = drawn["fig"].axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["teacher (mstr)", "student, distilled (mstr)", "xgboost"]  # no runs, no row; no fitted peer either
    means = [container.lines[0].get_xdata()[0] for container in ax.containers]
    assert means == pytest.approx([0.795, 0.82, 0.793])


def test_roc_and_pr_curves_of_sixteen_classes_each_look_different(monkeypatch, tmp_path):
    """CIC-IDS2017's 16 classes: past the colour cycle's 10 colours, BENIGN and Infiltration - Portscan
    were drawn alike (so were two more pairs), and the legend could not tell their curves apart."""
    import numpy as np

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    classes = [f"class {k}" for k in range(16)]
    labels = np.arange(320) % 16
    probs = np.random.default_rng(0).dirichlet(np.ones(16), size=320)
    plots.roc_and_pr(probs, labels, classes, tmp_path / "roc.png", tmp_path / "pr.png", "test")
    for fig in figures:
        curves = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("class ")]
        assert len(curves) == 16
        assert len({(line.get_color(), line.get_linestyle()) for line in curves}) == 16


def test_a_test_file_named_test_gets_its_own_report_and_plots_beside_all_sets_together(monkeypatch, tmp_path):
    """Sets are labelled as in metrics.json (`test`: all together, `test_<name>`: one file); a file named
    test (test.csv) was labelled `test` like all of them, and its plots overwrote theirs."""
    import pandas as pd
    import torch

    from mstr.class_report import write_reports

    saved: list = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(path.name))
    sets = {"KDDTest+": (torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 1])),
            "test": (torch.tensor([[0.7, 0.3]] * 3), torch.tensor([0, 0, 1]))}
    write_reports({"0.5": sets}, ["benign", "attack"], tmp_path)
    assert len(saved) == len(set(saved)) == 9  # confusion, ROC, PR for all sets and for each file
    assert {"confusion_matrix.png", "confusion_matrix_test.png", "confusion_matrix_KDDTest+.png"} <= set(saved)
    report = pd.read_csv(tmp_path / "per_class.csv")
    support = report[report["class"] == "macro avg"].set_index("set")["support"]
    assert support.to_dict() == {"test": 5, "test_KDDTest+": 2, "test_test": 3}


def test_a_multiclass_report_names_its_decision_the_most_likely_class_not_a_threshold(monkeypatch, tmp_path):
    """A multi-class model predicts its argmax; the report said "decision threshold 0.5" over it, a rule
    it never applied (a class can win at 0.4). Binary reports keep their threshold."""
    import pandas as pd
    import torch

    from mstr.class_report import write_reports

    titles: list = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: titles.append(fig.axes[0].get_title()))
    sets = {"a": (torch.tensor([[0.4, 0.35, 0.25], [0.2, 0.3, 0.5]]), torch.tensor([0, 2]))}
    text = write_reports({"0.5": sets}, ["benign", "dos", "scan"], tmp_path)
    assert "threshold" not in text and "### test, most likely class" in text
    assert set(pd.read_csv(tmp_path / "per_class.csv")["threshold"]) == {"argmax"}
    assert titles[0] == "test (most likely class)"
    binary = write_reports({"0.5": {"a": (torch.tensor([[0.7, 0.3]]), torch.tensor([0]))}}, ["benign", "attack"],
                           tmp_path)
    assert "### test, decision threshold 0.5" in binary


def test_the_reports_macro_average_is_the_runs_over_the_classes_a_set_holds_or_is_predicted():
    """A class neither in the set nor predicted (a capture without that attack) counted as F1 0 in the
    report's macro row, which then disagreed with metrics.json's test/f1 for the same predictions."""
    import torch

    from mstr.class_report import per_class_rows
    from mstr.training.evaluation import score

    probs = torch.tensor([[0.8, 0.1, 0.1, 0.0], [0.3, 0.6, 0.1, 0.0], [0.2, 0.7, 0.1, 0.0],
                          [0.1, 0.2, 0.7, 0.0], [0.6, 0.3, 0.1, 0.0]])
    labels = torch.tensor([0, 1, 2, 2, 1])  # class 3: neither held nor predicted
    rows = {row["class"]: row for row in per_class_rows(labels.numpy(), probs.argmax(1).numpy(), list("abcd"))}
    metrics = score(probs, labels, 4, "test/")
    for key in ("precision", "recall", "f1"):
        assert rows["macro avg"][key] == pytest.approx(metrics[f"test/{key}"], abs=1e-6)
    assert rows["macro avg"]["support"] == 5 and rows["d"]["support"] == 0


def test_a_binary_set_of_one_class_draws_no_roc_curve(monkeypatch, tmp_path):
    """Attacks alone: the metrics leave AUROC out, but roc.png drew a meaningless curve labelled AUC nan
    (with sklearn's UndefinedMetricWarning), as the multi-class plots never did for such a class."""
    import warnings

    import numpy as np

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.roc_and_pr(probs, np.array([1, 1, 1]), ["benign", "attack"], tmp_path / "r.png",
                         tmp_path / "p.png", "attacks only")
    assert [line.get_label() for fig in figures for line in fig.axes[0].get_lines()
            if not line.get_label().startswith("_")] == []
