"""Whether a checkpoint fits: the data a teacher or an evaluated model was trained on (features, classes,
window, the very rows), and the config a run resumes with."""

from __future__ import annotations

from pathlib import Path

from mstr.errors import DataError
from mstr.training.checkpoint import read_checkpoint
from mstr.training.module import FlowClassifier


def check_signature(path: str | Path, found: dict, expected: dict, same_rows: bool = False,
                    keys: tuple[str, ...] = ("num_features", "classes", "window")) -> None:
    """A teacher (or evaluated model) must agree with the data on `keys`; with `same_rows`, also have
    learnt from exactly this config's train + validation rows, so that none of the test rows can have
    reached the student through it."""
    problems = []
    for key in keys:
        if found.get(key) != expected.get(key):
            problems.append(f"{key}: checkpoint {found.get(key)!r} vs data {expected.get(key)!r}")
    if problems:
        raise DataError(f"{path}: trained on different data than this config gives ("
                        + "; ".join(problems) + "); use a checkpoint trained with the same data config")
    if same_rows and found.get("dev_rows") != expected.get("dev_rows"):
        raise DataError(f"{path}: trained on other rows than this data config's train + validation split "
                        f"(fingerprint {found.get('dev_rows')} vs {expected.get('dev_rows')}: another split, file "
                        "or mstr version), so it may have seen the test rows; train the teacher with this "
                        "data config (leave distill.teacher_ckpt unset)")


def differences(found, expected, name: str) -> list[str]:
    """`name.key: checkpoint X vs config Y` for each leaf where two nested settings differ, so that a
    refusal names the setting to change rather than printing both whole dicts."""
    if isinstance(found, dict) and isinstance(expected, dict):
        return [line for key in sorted(set(found) | set(expected), key=str)
                for line in differences(found.get(key), expected.get(key), f"{name}.{key}")]
    if found == expected:
        return []
    return [f"{name}: checkpoint {_short(found)} vs config {_short(expected)}"]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse_unrecorded(path: str | Path, found: dict, keys: tuple[str, ...]) -> None:
    """A checkpoint that records none of a setting (an older mstr's, or not written by mstr.train) cannot be
    checked against the config: said as such, not as a config that differs from the run's."""
    missing = [key for key in keys if found.get(key) is None]
    if missing:
        raise DataError(f"{path}: cannot resume: the checkpoint records no {', '.join(missing)} (written by an "
                        "older mstr, or not by mstr.train), so it cannot be checked against this config; start a "
                        "new run (leave out ckpt_path= and resume=)")


def _refuse_resume(path: str | Path, problems: list[str]) -> None:
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise DataError(f"{path}: cannot resume: the checkpoint was trained with another config ({shown}); "
                        "resume with the command that started the run")


def check_resumable_config(path: str | Path, ckpt: dict, role: str, backbone: dict, optim: dict, loss: dict,
                           distill: dict | None, max_epochs: int) -> None:
    """Before any data is read or teacher trained: the model settings of the config (role, backbone,
    optimiser, loss, distillation or none) must be the checkpoint's, and so must the epochs its
    learning-rate schedule is laid over. What the data decides (features, window, rows) is checked by
    `check_resumable` once the data is loaded."""
    found = ckpt.get("hyper_parameters", {})
    _refuse_unrecorded(path, found, ("role", "backbone", "optim", "loss"))
    trained = found["backbone"]
    problems = differences(found.get("role"), role, "model.role")
    problems += differences({k: trained.get(k) for k in backbone}, backbone, "model.backbone")
    problems += differences(found.get("optim"), optim, "model.optim")  # a restored optimiser keeps its own rate
    problems += differences(found.get("loss"), loss, "loss")
    scheduled = any("total_steps" in s for s in ckpt.get("lr_schedulers") or [])
    if scheduled and ckpt.get("max_epochs", max_epochs) != max_epochs:
        problems.append(f"trainer.max_epochs: checkpoint {ckpt['max_epochs']} vs config {max_epochs}, and its "
                        "learning-rate schedule is laid over its epochs (to train longer, start a new run)")
    if (found.get("distill") is None) != (distill is None):
        problems.append("distill: the checkpoint's model was trained without a teacher, the config distils (add "
                        "distill=none)" if distill is not None else
                        "distill: the checkpoint's model was distilled, the config trains without a teacher")
    elif distill is not None:  # the settings the student's checkpoint records (the teacher's own are its cache's)
        problems += differences(found["distill"], {k: distill.get(k) for k in found["distill"]}, "distill")
    _refuse_resume(path, problems)


def check_resumable(path: str | Path, module: FlowClassifier) -> dict:
    """A checkpoint to resume training from: safe to load, and made by the same model on the same data.
    Returns the checkpoint dict."""
    ckpt = read_checkpoint(path)
    found, expected = ckpt["hyper_parameters"], module.hparams
    _refuse_unrecorded(path, found, ("num_features", "num_classes", "class_names", "data_signature"))
    problems = []
    for key in ("role", "num_features", "num_classes", "class_names", "data_signature", "backbone", "optim", "loss",
                "distill"):
        problems += differences(found.get(key), expected.get(key), key)
    _refuse_resume(path, problems)
    return ckpt
