"""Safe checkpoint loading: `torch.load(weights_only=True)`, so a pickle payload can never run."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from mstr.errors import DataError
from mstr.training.module import CHECKPOINT_FORMAT, FlowClassifier


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, refusing anything that needs arbitrary code to unpickle."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsupported content"
        raise DataError(f"{path}: refused to load: the file holds objects that only a full unpickle could "
                        f"build ({first}); only load checkpoints you trust, written by mstr") from None
    except Exception as err:  # truncated, not a zip, not a torch file
        raise DataError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise DataError(f"{path}: not an mstr checkpoint (no state_dict / hyper_parameters)")
    version = ckpt.get("mstr_format", 0)
    if version > CHECKPOINT_FORMAT:
        raise DataError(f"{path}: checkpoint format v{version} is newer than this mstr reads "
                        f"(v{CHECKPOINT_FORMAT}); upgrade mstr")
    return ckpt


def load_classifier(path: str | Path) -> FlowClassifier:
    """Rebuild the model a checkpoint was trained as (teacher or student) with its weights, in eval mode."""
    ckpt = read_checkpoint(path)
    hp = dict(ckpt["hyper_parameters"])
    hp.pop("distill", None)  # a distilled student scores like any classifier
    model = FlowClassifier(**hp)
    # Only the backbone: task-loss buffers and distillation-only parts (hint projections) stay behind.
    state = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("task_loss.")] + list(unexpected)
    if bad:
        raise DataError(f"{path}: weights do not fit the model its config describes ({bad[:3]})")
    return model.eval()


def check_signature(path: str | Path, found: dict, expected: dict) -> None:
    """A teacher (or evaluated model) must agree with the data: features, classes, window."""
    problems = []
    for key in ("num_features", "classes", "window"):
        if found.get(key) != expected.get(key):
            problems.append(f"{key}: checkpoint {found.get(key)!r} vs data {expected.get(key)!r}")
    if problems:
        raise DataError(f"{path}: trained on different data than this config gives ("
                        + "; ".join(problems) + "); use a checkpoint trained with the same data config")
