"""The names a config may choose for each option, in one place: the code that implements an option,
the value checks (`mstr.config.validate`) and the benchmarks read them here, and a test checks
`configs/` against them. Plain constants, so reading them costs nothing (the command-line check
runs before torch is imported)."""

TASKS = ("binary", "multiclass")
ROLES = ("teacher", "student")
SAMPLERS = ("none", "weighted", "sqrt")            # data.sampler
SCALERS = ("standard", "minmax")                   # data.scaler
BINS_FROM = ("quantile", "target")                 # data.bins_from
COLUMN_ORDERS = ("data", "dependence", "shuffled")  # data.column_order
LOSSES = ("ce", "focal")                           # loss.name
CLASS_WEIGHTS = ("none", "balanced", "sqrt")       # loss.class_weights
SCHEDULERS = ("onecycle", "none")                  # model.optim.scheduler
DISTILL_METHODS = ("logits", "features", "attention", "combined")  # distill.method, besides `none`
TREE_TEACHERS = ("xgboost", "lightgbm")
DISTILL_TEACHERS = ("network", *TREE_TEACHERS)     # distill.teacher
DISTILL_AUGMENTS = ("none", "mixup", "swap")       # distill.augment
DISTILL_SETTINGS = ("method", "teacher", "temperature", "alpha", "feature_weight", "attention_weight",
                    "hint_warmup_fraction", "augment", "augment_fraction", "teacher_ckpt", "teacher_max_epochs",
                    "teacher_model")                # the keys of configs/distill/
BEST_VAL_METRICS = ("acc", "f1", "auroc")          # val/<name>_best in metrics.json: what a sweep may optimise
METRIC_NAMES = ("acc", "precision", "recall", "f1", "specificity", "fpr", "auroc")  # <split>/<name>, each split
# what a run logs per validation epoch: callbacks.model_checkpoint.monitor / early_stopping.monitor
VAL_MONITORS = ("val/loss", *(f"val/{name}" for name in METRIC_NAMES))
PEERS = ("majority", "stump", "logreg", "random_forest", "lightgbm", "xgboost")  # baselines.models
