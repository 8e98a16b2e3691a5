"""PNG plots of a training run and of an evaluation: learning curves, confusion matrix, ROC and
precision-recall curves.

Figures are built with `matplotlib.figure.Figure` (Agg canvas), never pyplot: no display, no global
figure state, so plotting runs the same on a headless server as on a laptop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve


CYCLE_COLOURS = 10  # matplotlib's default colour cycle
LINE_STYLES = ("-", "--", ":", "-.")


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
    if len(classes) == 2:  # a set of attacks (or benign flows) alone has no ROC: its AUROC is left out too
        return [(classes[1], labels == 1, probs[:, 1])] if 0 < (labels == 1).sum() < len(labels) else []
    return [(name, labels == k, probs[:, k]) for k, name in enumerate(classes)
            if 0 < (labels == k).sum() < len(labels)]


def roc_and_pr(probs: np.ndarray, labels: np.ndarray, classes: list[str], roc_path: Path,
               pr_path: Path, title: str) -> None:
    """ROC and precision-recall curves (one-vs-rest per class when multiclass)."""
    curves = _one_vs_rest(np.asarray(probs), np.asarray(labels), classes)
    roc_fig, pr_fig = Figure(figsize=(6, 5)), Figure(figsize=(6, 5))
    roc_ax, pr_ax = roc_fig.add_subplot(), pr_fig.add_subplot()
    for i, (name, positive, score) in enumerate(curves):
        # the colour cycle has 10 colours: from the 11th class on (CIC-IDS2017 has 16) a curve would share
        # its colour with an earlier one, so each round of the cycle gets its own line style
        style = LINE_STYLES[i // CYCLE_COLOURS % len(LINE_STYLES)]
        fpr, tpr, _ = roc_curve(positive, score)
        roc_ax.plot(fpr, tpr, linestyle=style, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(positive, score)
        pr_ax.plot(recall, precision, linestyle=style,
                   label=f"{name} (AP {average_precision_score(positive, score):.3f})")
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


def learning_curves(history, path: Path, title: str, monitor: str, mode: str) -> None:
    """Per epoch: the training objective and validation loss (left), the validation metrics and the
    training F1 (right), the epoch whose `monitor` value the kept checkpoint has marked on both.
    `history` is one row per epoch (`mstr.jobs.loggers.epoch_history`)."""
    fig = Figure(figsize=(11, 4))
    loss_ax, metric_ax = fig.subplots(1, 2)
    epochs = history.index.to_numpy()
    for ax, columns in ((loss_ax, [c for c in history if c.endswith("loss") or c.endswith("loss_epoch")]),
                        (metric_ax, [c for c in ("val/f1", "val/acc", "val/auroc", "train/f1") if c in history])):
        for column in columns:
            values = history[column].to_numpy(dtype=float)
            shown = ~np.isnan(values)
            if shown.any():
                ax.plot(epochs[shown], values[shown], marker="o", markersize=3,
                        label=column.removesuffix("_epoch"), linestyle="--" if column.startswith("train") else "-")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if monitor in history and history[monitor].notna().any():
        best = history[monitor].idxmax() if mode == "max" else history[monitor].idxmin()
        for ax in (loss_ax, metric_ax):
            ax.axvline(best, color="grey", linewidth=0.8, linestyle=":")
        metric_ax.set_title(f"kept: epoch {best} ({monitor} {history[monitor][best]:.4f})", fontsize=9)
    loss_ax.set_ylabel("loss")
    metric_ax.set_ylabel("metric")
    for ax in (loss_ax, metric_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def traffic_loss(levels: list[tuple[float, float, float, float, float]], path: Path, title: str) -> None:
    """`mstr.bench loss` as curves: one panel per attack share, each part of the loss (dropped unread,
    benign flagged, attacks missed, in % of the offered flows) and their total against the arrival rate
    as a multiple of the detector's measured capacity, which is marked. `levels` holds (share, rate
    factor, dropped, benign flagged, missed) per replayed level."""
    shares = sorted({level[0] for level in levels})
    fig = Figure(figsize=(4.2 * len(shares), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(shares), sharey=True))
    for ax, share in zip(axes, shares):
        rows = sorted(level[1:] for level in levels if level[0] == share)
        factor, dropped, flagged, missed = (np.array(column, dtype=float) for column in zip(*rows))
        for values, label in ((dropped, "dropped unread"), (flagged, "benign flagged"), (missed, "attacks missed")):
            ax.plot(factor, values, marker="o", markersize=3, label=label)
        ax.plot(factor, dropped + flagged + missed, marker="o", markersize=3, color="black", label="total loss")
        ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(factor, [f"{f:g}x" for f in factor], fontsize=8)
        ax.minorticks_off()
        ax.set(xlabel="offered flows/s, as a multiple of the capacity", title=f"{share:.0%} attacks")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("% of offered flows")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def speed(measured: dict[tuple[str, str], tuple[float, float, float]], path: Path, title: str) -> None:
    """`mstr.bench speed` as bars: throughput at a large batch (left) and latency for one flow, p50 and
    p99 (right), one bar per (model, runtime), log scales since they span orders of magnitude."""
    names = [f"{model} ({runtime})" for model, runtime in measured]
    throughput, p50, p99 = (np.array(column, dtype=float) for column in zip(*measured.values()))
    at = np.arange(len(names))
    fig = Figure(figsize=(11, 0.45 * len(names) + 1.6))
    rate_ax, latency_ax = fig.subplots(1, 2, sharey=True)
    rate_ax.barh(at, throughput, color="tab:blue")
    rate_ax.set(xscale="log", xlabel="flows/s (more is better)",
                xlim=(throughput.min() / 3, throughput.max() * 4))
    for y, value in zip(at, throughput):  # a log axis has no zero for a bar to start from: say the value
        rate_ax.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    latency_ax.barh(at - 0.2, p50, height=0.4, label="p50", color="tab:green")
    latency_ax.barh(at + 0.2, p99, height=0.4, label="p99", color="tab:red")
    latency_ax.set(xscale="log", xlabel="ms for one flow (less is better)")
    latency_ax.legend(fontsize=8)
    rate_ax.set_yticks(at, names)
    rate_ax.invert_yaxis()  # the table's order, top down
    for ax in (rate_ax, latency_ax):
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title)
    _save(fig, path)


def ablation(deltas: dict[str, list[tuple[str, list[float], list[float]]]], path: Path, title: str) -> None:
    """`mstr.bench ablation` as a forest plot, one panel per dataset: each variant's per-seed difference
    to the default in test accuracy (dots, and their mean ± std) beside its difference in validation F1,
    the number model selection saw (hollow, mean ± std). A bar that straddles zero is a change inside
    the seed spread. `deltas` holds, per dataset, (variant, Δ test accuracy per seed, Δ val F1 per seed)."""
    panels = {name: rows for name, rows in deltas.items() if rows}
    height = max(len(rows) for rows in panels.values())
    fig = Figure(figsize=(5.5 * len(panels), 0.45 * height + 1.8))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (dataset, rows) in zip(axes, panels.items()):
        at = np.arange(len(rows))
        for y, (_, test, val) in zip(at, rows):
            ax.plot(test, [y - 0.15] * len(test), "o", color="tab:blue", alpha=0.35, markersize=3)
            ax.errorbar(np.mean(test), y - 0.15, xerr=np.std(test), fmt="o", color="tab:blue", capsize=3,
                        label="test accuracy" if y == 0 else None)
            ax.errorbar(np.mean(val), y + 0.15, xerr=np.std(val), fmt="o", mfc="white", color="tab:orange",
                        capsize=3, label="validation F1" if y == 0 else None)
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_yticks(at, [name for name, _, _ in rows], fontsize=8)
        ax.invert_yaxis()  # the table's order, top down
        ax.set(xlabel="difference to the default student (per seed)", title=dataset)
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def accuracy(scores: dict[str, list[tuple[str, list[float]]]], path: Path, title: str) -> None:
    """`mstr.bench accuracy` as a dot plot, one panel per dataset: each model's test accuracy per seed
    (dots) and its mean ± std, mstr's networks above the tree peers, so a gap can be read against the
    seed spread. `scores` holds, per dataset, (model, accuracy per seed); a model without runs is left out."""
    panels = {name: [(label, acc) for label, acc in rows if acc] for name, rows in scores.items()}
    panels = {name: rows for name, rows in panels.items() if rows}
    height = max(len(rows) for rows in panels.values())
    fig = Figure(figsize=(5.0 * len(panels), 0.45 * height + 1.6))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (dataset, rows) in zip(axes, panels.items()):
        for y, (label, acc) in enumerate(rows):
            color = "tab:blue" if label.endswith("(mstr)") else "tab:grey"
            ax.plot(acc, [y] * len(acc), "o", color=color, alpha=0.35, markersize=3)
            ax.errorbar(np.mean(acc), y, xerr=np.std(acc), fmt="o", color=color, capsize=3)
        ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
        ax.invert_yaxis()  # the table's order, top down
        ax.set(xlabel="test accuracy (per seed, mean ± std)", title=dataset)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title)
    _save(fig, path)
