"""`FlowDataModule`: load splits, carve validation, fit preprocessing on train, build causal windows."""

from __future__ import annotations

import hashlib
import logging
from typing import Callable, Optional

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from mstr.data.datasets import DatasetSplits
from mstr.data.preprocessing import FlowPreprocessor
from mstr.data.splits import stratified_holdout
from mstr.data.sampling import EpochSampler, make_sampler
from mstr.data.table import FlowTable
from mstr.data.windows import FlowWindowDataset, collate_prebatched
from mstr.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def carve_validation(table: FlowTable, fraction: float, temporal: bool, seed: int) -> tuple[FlowTable, FlowTable]:
    """Split train into (train, val): the newest `fraction` by time when the data is temporal,
    else a seeded per-class (stratified) random carve. Classes with one row stay in train."""
    n = len(table)
    if temporal and table.time_col:
        order = np.argsort(table.frame[table.time_col].to_numpy(), kind="stable")
        cut = int(round(n * (1.0 - fraction)))
        return table.take(np.sort(order[:cut])), table.take(np.sort(order[cut:]), f"{table.source} (validation carve)")
    val_mask = stratified_holdout(table.labels, fraction, seed)
    return (table.take(np.flatnonzero(~val_mask)),
            table.take(np.flatnonzero(val_mask), f"{table.source} (validation carve)"))


def rows_fingerprint(tables: list[FlowTable]) -> str:
    """Order-free hash of the rows (features and label) of `tables`.

    Taken over train + validation (the rows a model may learn from): two runs with the same fingerprint
    kept the same rows out for testing, whatever their seeds, and a teacher or checkpoint with another
    one may have trained on this run's test rows."""
    cols = [*tables[0].feature_cols, tables[0].label_col]
    hashes = np.concatenate([pd.util.hash_pandas_object(t.frame[cols], index=False).to_numpy() for t in tables])
    hashes.sort()
    return hashlib.sha256(hashes.tobytes()).hexdigest()[:16]


def duplicate_rows(train: FlowTable, other: FlowTable) -> int:
    """How many rows of `other` have a feature-identical row in `train` (leakage audit)."""
    cols = train.feature_cols
    seen = set(pd.util.hash_pandas_object(train.frame[cols], index=False).to_numpy().tolist())
    hashes = pd.util.hash_pandas_object(other.frame[cols], index=False).to_numpy()
    return int(np.fromiter((h in seen for h in hashes.tolist()), dtype=bool, count=len(hashes)).sum())


class FlowDataModule(pl.LightningDataModule):
    """Windows `[batch, window, features]` for train / val / each test set of one dataset.

    `source` is a callable returning `DatasetSplits` (Hydra builds it from `data.source` with
    `_partial_: true`), so nothing is read until `setup`.
    """

    def __init__(self, source: Callable[[], DatasetSplits], name: str = "data", task: str = "binary",
                 window: int = 8, batch_size: int = 256, eval_batch_size: int = 1024,
                 sampler: str = "sqrt", val_fraction: float = 0.15, scaler: str = "standard",
                 max_categories: int = 32, numeric_bins: int = 0, num_workers: int = 0, seed: int = 0,
                 on_device: bool = False, **dataset_options):
        """`dataset_options` are the dataset's own keys (e.g. `data.test_files`); `source` already got
        them through config interpolation, they are kept here only to be reported."""
        super().__init__()
        self.dataset_options = dataset_options
        if window < 1:
            raise ConfigError(f"data.window={window}: must be >= 1")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size}: must be >= 1")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction}: must be in (0, 1)")
        self.source, self.name, self.task, self.window = source, name, task, window
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.sampler_mode, self.val_fraction, self.scaler = sampler, val_fraction, scaler
        self.max_categories, self.numeric_bins = max_categories, numeric_bins
        self.num_workers, self.seed = num_workers, seed
        self.on_device = on_device
        self.preprocessor: Optional[FlowPreprocessor] = None
        self.audit: dict = {}
        self.tables: dict[str, FlowTable] = {}
        self._datasets: dict[str, FlowWindowDataset] = {}
        self._train_start: Optional[tuple[int, int]] = None

    # ---- setup -------------------------------------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        if self._datasets:  # one setup serves teacher, student and evaluation alike
            return
        splits = self.source()
        for note in splits.notes:
            log.info(note)
        train = splits.train
        val = splits.val
        if val is None:
            train, val = carve_validation(train, self.val_fraction, splits.temporal, self.seed)
        self.temporal = splits.temporal
        if not splits.temporal and self.window > 1:
            log.info("%s: the rows have no time order, so a window can only be the flow itself: window %d -> 1",
                     self.name, self.window)
            self.window = 1
        self.tables = {"train": train, "val": val, **{f"test_{k}": t for k, t in splits.tests.items()}}
        self.test_names = list(splits.tests)
        self.preprocessor = FlowPreprocessor.fit(train, scaler=self.scaler, max_categories=self.max_categories,
                                                 numeric_bins=self.numeric_bins)
        if len(np.unique(self.preprocessor.encode_labels(train))) < 2:
            raise DataError(f"{train.source}: only one class ({self.preprocessor.classes}) in the training "
                            "split; a detector needs both benign and attack flows")
        for key, table in self.tables.items():
            if len(table) == 0:
                raise DataError(f"{table.source}: the split is empty")
            self._datasets[key] = FlowWindowDataset.from_table(table, self.preprocessor, self.window)
        self._audit(train, val, splits.tests)

    def _audit(self, train: FlowTable, val: FlowTable, tests: dict[str, FlowTable]) -> None:
        self.dev_rows, self.val_rows = rows_fingerprint([train, val]), rows_fingerprint([val])
        audit = {"preprocessing_fit_on": train.source, "preprocessing_fit_rows": len(train),
                 "dev_rows_fingerprint": self.dev_rows,
                 "windows_cross_splits": False, "val_selection": "temporal" if self.temporal else "stratified"}
        for name, table in {"val": val, **tests}.items():
            dup = duplicate_rows(train, table)
            audit[f"dup_train_{name}"] = dup
            audit[f"dup_train_{name}_share"] = round(dup / max(len(table), 1), 6)
        self.audit = audit
        log.info("leakage audit: %s", ", ".join(f"{k}={v}" for k, v in audit.items()))

    # ---- facts the models need ---------------------------------------------------------------
    @property
    def num_features(self) -> int:
        return self.preprocessor.num_features

    @property
    def num_classes(self) -> int:
        return self.preprocessor.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.preprocessor.classes

    def train_labels(self) -> np.ndarray:
        return self._datasets["train"].labels.numpy()

    def signature(self) -> dict:
        """What a checkpoint must agree with to be used on this data (checked on teacher load)."""
        return {"num_features": self.num_features, "classes": self.class_names, "window": self.window,
                "feature_names": self.preprocessor.feature_names, "dev_rows": self.dev_rows,
                "val_rows": self.val_rows, "seed": self.seed}

    # ---- loaders -----------------------------------------------------------------------------
    def _loader(self, dataset: FlowWindowDataset, train: bool) -> DataLoader:
        # Loaders have their own generator (no draw from the global RNG) and the training order depends
        # on (seed, epoch) only, so a resumed run continues exactly where the interrupted one was.
        generator = torch.Generator().manual_seed(self.seed)
        if not train:
            return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers,
                              collate_fn=collate_prebatched, persistent_workers=self.num_workers > 0,
                              generator=generator)
        labels = dataset.labels.numpy()
        sampler = make_sampler(labels, self.num_classes, self.sampler_mode, self.seed)
        if sampler is None:
            sampler = EpochSampler(len(labels), seed=self.seed)
        if self._train_start is not None:
            epoch, batches = self._train_start
            sampler.start_at(epoch, batches * self.batch_size)
            self._train_start = None
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=collate_prebatched, persistent_workers=self.num_workers > 0,
                          generator=generator)

    def resume_train_at(self, epoch: int, batches: int) -> None:
        """The next training loader starts in `epoch` after its first `batches` batches (exact resumption)."""
        self._train_start = (int(epoch), int(batches))

    def _fit_dataset(self, key: str) -> FlowWindowDataset:
        """The split the trainer fits on, on its device when `data.on_device`."""
        dataset = self._datasets[key]
        if self.on_device and self.trainer is not None:
            return dataset.to(self.trainer.strategy.root_device)
        return dataset

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._fit_dataset("train"), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._fit_dataset("val"), train=False)

    def test_loaders(self) -> dict[str, DataLoader]:
        """One loader per test set, by name; metrics are computed over all and over each."""
        return {name: self._loader(self._datasets[f"test_{name}"], train=False) for name in self.test_names}

    def dataset(self, key: str) -> FlowWindowDataset:
        return self._datasets[key]
