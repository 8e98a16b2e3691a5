"""Optuna pruning during training: report the monitored validation metric after every validation epoch
and stop the trial when the study's pruner says so.

optuna-integration ships `PyTorchLightningPruningCallback`, but it derives from `lightning.pytorch`'s
Callback, while mstr trains with `pytorch_lightning`: the two packages' classes are distinct, and the
Trainer refuses a callback of the other one. This one is the same idea on `pytorch_lightning`'s
Callback. It finds its trial in the study the sweep opened in this process (`STUDIES`), else through the
study's database (storage URL, study name, trial id), building the study's pruner from its spec (pruners
are not stored with a study), so it is plain config that `mstr.sweep` adds to a trial's composed config.
"""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


# study name -> the study this process's sweep opened (`mstr.sweep` runs its trials in its own process):
# an in-memory study (`--storage none`) has no database to find it in, and the config holds the storage
# URL without its password (the config is saved with the trial and logged to W&B)
STUDIES: dict = {}


def optuna_object(module: str, options: dict, **defaults: Any):
    """`optuna.<module>.<options["name"]>(**rest of options)`, e.g. ("pruners", {"name": "MedianPruner"})."""
    import optuna

    options = {**defaults, **options}
    name = options.pop("name")
    cls = getattr(getattr(optuna, module), name, None)
    if not isinstance(cls, type):
        raise ValueError(f"{name!r} is not a class of optuna.{module}")
    return cls(**options)


class OptunaPruning(Callback):
    def __init__(self, storage: Optional[str], study_name: str, trial_id: int, monitor: str, pruner: dict):
        self.storage, self.study_name, self.trial_id, self.monitor = storage, study_name, int(trial_id), monitor
        self.pruner = dict(pruner)
        self._trial = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        import optuna

        if trainer.is_global_zero:
            study = STUDIES.get(self.study_name) or optuna.load_study(
                study_name=self.study_name, storage=self.storage, pruner=optuna_object("pruners", self.pruner))
            self._trial = optuna.trial.Trial(study, self.trial_id)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import optuna

        if trainer.sanity_checking:
            return
        value: Optional[float] = None
        if self.monitor in trainer.callback_metrics:
            value = float(trainer.callback_metrics[self.monitor])
        prune = False
        if self._trial is not None and value is not None:
            self._trial.report(value, step=trainer.current_epoch)
            prune = self._trial.should_prune()
        if trainer.strategy.broadcast(prune):  # every rank stops, or none
            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch}: {self.monitor}={value}")
