"""PNG plots of an evaluation: confusion matrix, ROC and precision-recall curves.

Figures are built with `matplotlib.figure.Figure` (Agg canvas), never pyplot: no display, no global
figure state, so evaluation runs the same on a headless server as on a laptop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def confusion(counts: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    """Rows = true class, columns = predicted; colour = share of the true class, text = count."""
    counts = np.asarray(counts)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.6 * len(classes)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    for i in ticks:
        for j in ticks:
            ax.text(j, i, f"{counts[i, j]:,}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)


def _one_vs_rest(probs: np.ndarray, labels: np.ndarray, classes: list[str]):
    """(name, positives, scores) per curve: the attack score when binary, else each class present
    with both positives and negatives (a curve is undefined otherwise)."""
    if len(classes) == 2:
        return [(classes[1], labels == 1, probs[:, 1])]
    return [(name, labels == k, probs[:, k]) for k, name in enumerate(classes)
            if 0 < (labels == k).sum() < len(labels)]


def roc_and_pr(probs: np.ndarray, labels: np.ndarray, classes: list[str], roc_path: Path,
               pr_path: Path, title: str) -> None:
    """ROC and precision-recall curves (one-vs-rest per class when multiclass)."""
    curves = _one_vs_rest(np.asarray(probs), np.asarray(labels), classes)
    roc_fig, pr_fig = Figure(figsize=(6, 5)), Figure(figsize=(6, 5))
    roc_ax, pr_ax = roc_fig.add_subplot(), pr_fig.add_subplot()
    for name, positive, score in curves:
        fpr, tpr, _ = roc_curve(positive, score)
        roc_ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(positive, score)
        pr_ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(positive, score):.3f})")
    roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {title}")
    pr_ax.set(xlabel="recall", ylabel="precision", title=f"precision-recall: {title}",
              xlim=(0, 1), ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        if curves:
            ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8)
        ax.grid(alpha=0.3)
    _save(roc_fig, roc_path)
    _save(pr_fig, pr_path)
