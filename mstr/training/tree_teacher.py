"""A tree ensemble as the distillation teacher (`distill.teacher=xgboost|lightgbm`).

On tabular flow features the strongest simple model is a gradient-boosted ensemble, so a tiny network
learns most from it: the booster is fit on the same training rows (early stopping on the validation
split, never on test) and the student is trained against its class probabilities. The booster sees
one flow (the newest of each window), like the peer baselines; the student still reads the window.

`BoosterTeacher` wraps the fitted booster as a frozen module whose "logits" are log-probabilities
(softmax(log p / T) is p tempered by T), so every logit-distillation path treats it like a network
teacher. It has no intermediate maps: feature and attention transfer need a network teacher.
The booster is saved in its library's own text format (never pickled) beside a small JSON of what it
was trained on, so a cached teacher is checked against the data like a network checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mstr.options import TREE_TEACHERS
from mstr.errors import DataError
from mstr.peers import fit_on


class BoosterTeacher(nn.Module):
    """Frozen booster: windows [batch, window, features] -> log class probabilities [batch, classes]."""

    reads_context = False  # it scores the newest flow alone: a window's earlier flows never change its answer

    def __init__(self, kind: str, booster, num_features: int, num_classes: int, signature: dict):
        super().__init__()
        if kind not in TREE_TEACHERS:
            raise ValueError(f"tree teacher must be one of {list(TREE_TEACHERS)}, got {kind!r}")
        self.kind, self.booster = kind, booster
        self.num_features, self.num_classes, self.signature = num_features, num_classes, signature

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        if self.kind == "xgboost":
            p = np.asarray(self.booster.inplace_predict(rows))
        else:
            p = np.asarray(self.booster.predict(rows))
        if p.ndim == 1:  # binary boosters give P(class 1)
            p = np.stack([1.0 - p, p], axis=1)
        return p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x[:, -1, :].detach().to("cpu", torch.float32).numpy()
        p = torch.from_numpy(self.probabilities(rows).astype(np.float32))
        return p.clamp_min(1e-7).log().to(x.device)

    def cost(self, window: int) -> dict[str, int]:
        """Size in the units a tree ensemble has: trees and nodes (splits + leaves)."""
        if self.kind == "xgboost":
            frame = self.booster.trees_to_dataframe()
            return {"trees": int(frame["Tree"].nunique()), "nodes": int(len(frame))}
        dump = self.booster.dump_model()["tree_info"]
        leaves = sum(t["num_leaves"] for t in dump)
        return {"trees": len(dump), "nodes": int(2 * leaves - len(dump))}

    # ---- persistence: the library's own format, plus what it learnt from -------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path))
        meta = {"kind": self.kind, "num_features": self.num_features, "num_classes": self.num_classes,
                "signature": self.signature}
        path.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: Path) -> "BoosterTeacher":
        path = Path(path)
        meta_path = path.with_suffix(".meta.json")
        if not path.is_file() or not meta_path.is_file():
            raise DataError(f"{path}: no tree teacher there (expected it and {meta_path.name})")
        meta = json.loads(meta_path.read_text())
        if meta["kind"] == "xgboost":
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(str(path))
        else:
            import lightgbm

            booster = lightgbm.Booster(model_file=str(path))
        return cls(meta["kind"], booster, meta["num_features"], meta["num_classes"], meta["signature"])


def booster_file(kind: str) -> str:
    return "teacher.json" if kind == "xgboost" else "teacher.txt"


def fit_tree_teacher(kind: str, dm, seed: int, n_jobs: int = 2) -> BoosterTeacher:
    """Fit the booster on `dm`'s training rows (the newest flow of each training window), stopping
    early on its validation rows."""
    model, _ = fit_on(kind, dm, seed, n_jobs)
    if kind == "xgboost":
        booster = model.get_booster()
        best = getattr(model, "best_iteration", None)
        if best is not None:
            booster = booster[: best + 1]  # keep the trees early stopping chose
    else:
        import lightgbm

        booster = lightgbm.Booster(model_str=model.booster_.model_to_string(num_iteration=model.best_iteration_ or None))
    return BoosterTeacher(kind, booster, dm.num_features, dm.num_classes, dm.signature())
