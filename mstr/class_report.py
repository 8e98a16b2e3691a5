"""What a scored test set looks like to a reader: per-class precision / recall / F1 (CSV and markdown)
and the PNG plots (confusion matrix, ROC, precision-recall), written by `mstr.evaluate` and, at the end
of training, by `mstr.train`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix


def write_reports(decisions: dict[str, dict], classes: list[str], out_dir: Path) -> str:
    """Per-class CSV/markdown for every (test set, decision threshold) and the plots; returns the
    markdown. Probabilities of a tuned decision are already moved so that 0.5 applies. A multi-class
    model predicts its most likely class: no threshold, so its rows say `argmax`."""
    from mstr import plots
    from mstr.training.evaluation import each_and_all

    rows, markdown = [], []
    for decision, scored in decisions.items():
        rule = f"decision threshold {decision}" if len(classes) == 2 else "most likely class"
        for name, (probs, labels) in each_and_all(scored).items():
            probs, labels = probs.numpy(), labels.numpy()
            # all sets together are `test`, one file `test_<name>`, as in metrics.json: a test file
            # named test (test.csv) was labelled like all of them, and its plots overwrote theirs
            label = "test" if name is None else f"test_{name}"
            predicted = probs.argmax(axis=1)
            per_class = per_class_rows(labels, predicted, classes)
            rows += [{"set": label, "threshold": decision if len(classes) == 2 else "argmax", **row}
                     for row in per_class]
            markdown.append(_markdown(f"{label}, {rule}", per_class))
            suffix = ("" if name is None else f"_{_safe(name)}") + ("" if decision == "0.5" else "_tuned")
            plots.confusion(confusion_matrix(labels, predicted, labels=range(len(classes))), classes,
                            out_dir / f"confusion_matrix{suffix}.png", f"{label} ({rule})")
            if decision == "0.5":  # curves do not depend on the threshold
                plots.roc_and_pr(probs, labels, classes, out_dir / f"roc{suffix}.png",
                                 out_dir / f"pr{suffix}.png", label)
    pd.DataFrame(rows).to_csv(out_dir / "per_class.csv", index=False)
    text = "\n\n".join(markdown) + "\n"
    (out_dir / "per_class.md").write_text(text)
    return text


def per_class_rows(labels: np.ndarray, predicted: np.ndarray, classes: list[str]) -> list[dict]:
    """classification_report's rows: each class, then macro and support-weighted averages. The macro
    average is over the classes the set holds or the model predicts, as metrics.json's `test/f1` (a
    torchmetrics macro average) is: a class absent from both would count as an F1 of 0 and the report's
    macro F1 would disagree with the run's."""
    report = classification_report(labels, predicted, labels=range(len(classes)), target_names=classes,
                                   output_dict=True, zero_division=0)
    rows = [{"class": name, "precision": report[name]["precision"], "recall": report[name]["recall"],
             "f1": report[name]["f1-score"], "support": int(report[name]["support"])}
            for name in (*classes, "weighted avg")]
    seen = [rows[k] for k in range(len(classes)) if (labels == k).any() or (predicted == k).any()]
    macro = {key: float(np.mean([row[key] for row in seen])) if seen else 0.0
             for key in ("precision", "recall", "f1")}
    return [*rows[:-1], {"class": "macro avg", **macro, "support": len(labels)}, rows[-1]]


def _markdown(title: str, rows: list[dict]) -> str:
    lines = [f"### {title}", "", "| class | precision | recall | f1 | support |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['class']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']:,} |"
              for r in rows]
    return "\n".join(lines)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)
