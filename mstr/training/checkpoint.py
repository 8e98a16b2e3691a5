"""Reading checkpoints safely (`torch.load(weights_only=True)`, so a pickle payload can never run) and
rebuilding the model a checkpoint was trained as."""

from __future__ import annotations

from pathlib import Path

from mstr.errors import DataError
from mstr.training.module import CHECKPOINT_FORMAT, FlowClassifier
from mstr.training.safeload import load_weights_only


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, refusing anything that needs arbitrary code to unpickle."""
    path = Path(path)
    ckpt = load_weights_only(path)
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
    try:
        model = FlowClassifier(**hp)
    except (TypeError, ValueError, KeyError) as err:  # a Lightning checkpoint of another model, or none at all
        raise DataError(f"{path}: its hyper_parameters do not describe an mstr model ({' '.join(str(err).split())[:160]}); "
                        "give a checkpoint written by mstr.train") from None
    # Only the backbone: task-loss buffers and distillation-only parts (hint projections) stay behind.
    state = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("task_loss.")] + list(unexpected)
    if bad:
        raise DataError(f"{path}: weights do not fit the model its config describes ({bad[:3]})")
    return model.eval()
