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


def check_resumable(path: str | Path, module: FlowClassifier) -> dict:
    """A checkpoint to resume training from: safe to load, and made by the same model on the same data.
    Returns the checkpoint dict."""
    ckpt = read_checkpoint(path)
    found, expected = ckpt["hyper_parameters"], module.hparams
    problems = []
    for key in ("role", "num_features", "num_classes", "class_names", "data_signature", "backbone", "loss", "distill"):
        a, b = found.get(key), expected.get(key)
        if a != b:
            problems.append(f"{key}: checkpoint {a!r} vs config {b!r}")
    if problems:
        raise DataError(f"{path}: cannot resume: the checkpoint was trained with another config ("
                        + "; ".join(problems)[:400] + "); resume with the command that started the run")
    return ckpt
