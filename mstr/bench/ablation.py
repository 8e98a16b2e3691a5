"""`python -m mstr.bench ablation`: what each design choice buys, one change at a time.

Every row is the default student of the dataset's experiment config with ONE thing changed, trained
on the same splits over the same seeds (mean ± std), with the change's delta against the default:

  architecture  linear stem (a learned bottleneck instead of one token per column; 32 wide, and 4 wide
                for about the default's parameters), one feature kernel instead of the multi-scale
                set, pointwise only (kernel 1: no neighbouring columns), no residual paths, the
                columns ordered by their mutual dependence instead of the data's own order (or back,
                where the experiment orders them so) and shuffled, a whole-row branch (a kernel
                spanning all columns) in the first stage (or none, where the experiment has one), numeric
                bins (or none, where the experiment has them), no frequent-value indicators (where the
                experiment uses them), no
                time branches, window 1 / 4 / 16 (window data), no context swap (where the experiment
                swaps the earlier flows of a share of training windows)
  distillation  each KD method from the network teacher, a tree teacher (LightGBM, XGBoost), and KD on
                augmented windows (mixup, swapped columns)

Only where the window holds time (CIC-IDS2017, synthetic) are the time rows run: with window 1 there
is no time axis to ablate.
"""

from __future__ import annotations

from mstr.bench.runs import DATASETS, Variant, markdown, mean_std
from mstr.config import compose_config

ARCHITECTURE = [
    Variant("linear stem", ("model.backbone.stem=linear", "model.backbone.token_dim=32")),
    Variant("linear stem, 4 wide (params as default)", ("model.backbone.stem=linear", "model.backbone.token_dim=4")),
    Variant("one feature kernel (3)", ("model.backbone.feature_kernels=[3]",)),
    Variant("pointwise only (1)", ("model.backbone.feature_kernels=[1]",)),
    Variant("no residual", ("model.backbone.residual=false",)),
]
# Which rows a dataset gets follows from its default student's config (`variants`):
# where the experiment orders the feature axis by the columns' mutual dependence (data.column_order)
# the row puts them back in the data's order; elsewhere it orders them by dependence. Shuffled columns
# are the control for both: what an order with no meaning gives.
ORDER = {True: Variant("columns in the data's order", ("data.column_order=data",)),
         False: Variant("columns by dependence", ("data.column_order=dependence",))}
SHUFFLED = Variant("columns shuffled", ("data.column_order=shuffled",))
# Where the experiment gives the first stage a whole-row branch (model.backbone.row_branch) the row
# takes it away; elsewhere it adds one.
ROW = {True: Variant("no row branch", ("model.backbone.row_branch=false",)),
       False: Variant("row branch", ("model.backbone.row_branch=true",))}
# Where the experiment config encodes numeric columns piecewise-linearly (data.numeric_bins > 0) the row
# takes the bins away; elsewhere it adds 8 (NSL-KDD's number).
BINS = {True: Variant("no numeric bins", ("data.numeric_bins=0",)),
        False: Variant("numeric bins", ("data.numeric_bins=8",))}
# Where it also gives numeric columns indicators of their most frequent values (data.frequent_values > 0).
FREQUENT = [Variant("no frequent values", ("data.frequent_values=0",))]
# Where the window holds time (data.window > 1).
TIME = [
    Variant("no time branches", ("model.backbone.time_dilations=[]",)),
    Variant("window 1", ("data.window=1",)),
    Variant("window 4", ("data.window=4",)),
    Variant("window 16", ("data.window=16",)),
]
# Where the experiment swaps the earlier flows of a share of training windows (data.context_swap > 0).
CONTEXT = [Variant("no context swap", ("data.context_swap=0",))]
# Named like the accuracy and distill benchmarks' runs (same overrides), so the three share them.
DISTILLATION = [
    Variant("student_logits", ("model=student", "distill=logits")),
    Variant("student_features", ("model=student", "distill=features")),
    Variant("student_attention", ("model=student", "distill=attention")),
    Variant("student_combined", ("model=student", "distill=combined")),
    Variant("student_logits_lightgbm", ("model=student", "distill=logits", "distill.teacher=lightgbm")),
    Variant("student_logits_xgboost", ("model=student", "distill=logits", "distill.teacher=xgboost")),
    Variant("student_logits_mixup", ("model=student", "distill=logits", "distill.augment=mixup")),
    Variant("student_logits_lightgbm_swap", ("model=student", "distill=logits", "distill.teacher=lightgbm",
                                             "distill.augment=swap")),
]
DEFAULT = Variant("student_nokd", ("model=student", "distill=none"))
LABELS = {
    "student_nokd": "default student, no KD",
    "student_logits": "KD logits (network teacher)",
    "student_features": "KD features (network teacher)",
    "student_attention": "KD attention (network teacher)",
    "student_combined": "KD combined (network teacher)",
    "student_logits_lightgbm": "KD logits (LightGBM teacher)",
    "student_logits_xgboost": "KD logits (XGBoost teacher)",
    "student_logits_mixup": "KD logits + mixup windows (network teacher)",
    "student_logits_lightgbm_swap": "KD logits + swapped-column windows (LightGBM teacher)",
}


def variants(dataset: str, groups: tuple[str, ...]) -> list[Variant]:
    """The default first, then each group's rows (architecture and time rows train without KD). Which
    architecture rows apply is read off the dataset's default student, so that a row always changes
    something its experiment config sets."""
    rows = [DEFAULT]
    if "architecture" in groups:
        cfg = compose_config("train", [*DATASETS[dataset], *DEFAULT.overrides])
        data, backbone = cfg.data, cfg.model.backbone
        changes = (ARCHITECTURE + [ORDER[data.column_order == "dependence"], SHUFFLED, ROW[bool(backbone.row_branch)]]
                   + [BINS[data.numeric_bins > 0]] + (FREQUENT if data.frequent_values > 0 else [])
                   + (TIME if data.window > 1 else []) + (CONTEXT if data.context_swap > 0 else []))
        rows += [Variant(v.name, (*DEFAULT.overrides, *v.overrides)) for v in changes]
    if "distillation" in groups:
        rows += DISTILLATION
    return rows


def paired(runs: list[dict], base: list[dict], key: str) -> list[float]:
    """Per-seed differences of `key` to the default's run of the same seed (same split, same init seed)."""
    return [r[key] - b[key] for r, b in zip(runs, base)]


def above(delta: list[float]) -> str:
    """On how many seeds the variant is higher than the default: "k/n"."""
    return f"{sum(d > 0 for d in delta)}/{len(delta)}"


def deltas(results: dict) -> dict[str, list[tuple[str, list[float], list[float]]]]:
    """Per dataset, each variant's per-seed differences to the default: (label, Δ test accuracy, Δ
    validation F1), in the table's order (what `mstr.plots.ablation` draws)."""
    drawn = {}
    for dataset, by_variant in results.items():
        base = by_variant.get(DEFAULT.name, [])
        drawn[dataset] = [(LABELS.get(name, name), paired(runs, base, "test/acc"), paired(runs, base, "val/f1_best"))
                          for name, runs in by_variant.items() if runs and base and name != DEFAULT.name]
    return drawn


def table(results: dict) -> str:
    """One row per (dataset, variant): metrics as mean ± std; against the default, the per-seed accuracy,
    F1 (macro F1 on a multi-class task, where it is the metric that sees the rare classes) and AUROC
    differences (mean ± std) and on how many seeds the variant's accuracy is higher: a shift of the
    mean inside the seed spread shows up as a split count. Last, what model selection saw: validation F1
    and its per-seed difference to the default (with the seeds above it), and, for runs with
    `data.val_unseen_types`, the recall on validation's held-out attack types."""
    unseen = any("val/unseen_type_recall" in r for runs in results.values() for rs in runs.values() for r in rs)
    header = ["dataset", "variant", "accuracy", "Δacc vs default", "seeds above default", "F1", "ΔF1 vs default",
              "specificity", "AUROC", "ΔAUROC vs default", "unseen-attack recall", "teacher acc", "params",
              "train s", "val F1", "Δval F1 vs default (seeds above)"] + (["val unseen-type recall"] if unseen else [])
    rows = []
    for dataset, by_variant in results.items():
        base = by_variant.get(DEFAULT.name, [])
        for name, runs in by_variant.items():
            if not runs:
                continue
            compared = name != DEFAULT.name and bool(base)
            delta = paired(runs, base, "test/acc") if compared else []
            val_delta = paired(runs, base, "val/f1_best") if compared else []
            teacher = [r["teacher/test/acc"] for r in runs if "teacher/test/acc" in r]
            rows.append([dataset, LABELS.get(name, name), mean_std([r["test/acc"] for r in runs]),
                         mean_std(delta) if compared else "",
                         above(delta) if compared else "",
                         mean_std([r["test/f1"] for r in runs]),
                         mean_std(paired(runs, base, "test/f1")) if compared else "",
                         mean_std([r["test/specificity"] for r in runs]),
                         mean_std([r["test/auroc"] for r in runs]),
                         mean_std(paired(runs, base, "test/auroc")) if compared else "",
                         mean_std([r["test/novel_attack_recall"] for r in runs if "test/novel_attack_recall" in r])
                         if "test/novel_attack_recall" in runs[0] else "",
                         mean_std(teacher) if teacher else "", f"{runs[0]['model/params']:,}",
                         f"{sum(r['time/train_s'] for r in runs) / len(runs):.1f}",
                         mean_std([r["val/f1_best"] for r in runs]),
                         f"{mean_std(val_delta)} ({above(val_delta)})" if compared else ""]
                        + ([mean_std([r["val/unseen_type_recall"] for r in runs if "val/unseen_type_recall" in r])]
                           if unseen else []))
    return markdown(header, rows)
