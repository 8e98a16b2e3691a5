"""`FlowDataModule`: load splits, carve validation, fit preprocessing on train (or take a fitted one),
build causal windows."""

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
from mstr.data.preprocessing import FlowPreprocessor, class_order
from mstr.data.sampling import EpochSampler, make_sampler
from mstr.data.splits import hold_out, unseen_types_mask
from mstr.data.table import FlowTable, concat_tables
from mstr.data.windows import FlowWindowDataset, IndexedWindows, collate_prebatched
from mstr.errors import ConfigError, DataError
from mstr.options import COLUMN_ORDERS

log = logging.getLogger(__name__)
MOSTLY_COPIED = 0.5  # a test set with more of its rows copied from training than this is warned about


def rows_fingerprint(tables: list[FlowTable]) -> str:
    """Order-free hash of the rows (features and label) of `tables`.

    Taken over train + validation (the rows a model may learn from): two runs with the same fingerprint
    kept the same rows out for testing, whatever their seeds, and a teacher or checkpoint with another
    one may have trained on this run's test rows."""
    cols = [*tables[0].feature_cols, tables[0].label_col]
    hashes = np.concatenate([pd.util.hash_pandas_object(t.frame[cols], index=False).to_numpy() for t in tables])
    hashes.sort()
    return hashlib.sha256(hashes.tobytes()).hexdigest()[:16]


def copied_rows(train: FlowTable, other: FlowTable) -> np.ndarray:
    """Boolean per row of `other`: it has a feature-identical row in `train` (leakage audit; a model can
    score such a row by memory, so test metrics are also reported on the rows without one)."""
    cols = train.feature_cols
    seen = set(pd.util.hash_pandas_object(train.frame[cols], index=False).to_numpy().tolist())
    hashes = pd.util.hash_pandas_object(other.frame[cols], index=False).to_numpy()
    return np.fromiter((h in seen for h in hashes.tolist()), dtype=bool, count=len(hashes))


class FlowDataModule(pl.LightningDataModule):
    """Windows `[batch, window, features]` for train / val / each test set of one dataset.

    `source` is a callable returning `DatasetSplits` (Hydra builds it from `data.source` with
    `_partial_: true`), so nothing is read until `setup`. `preprocessor`: a fitted preprocessing to use
    instead of fitting one on the training split (scoring a checkpoint with its own); the data's
    classes must then be the ones it was fitted with. Keys of a dataset's own config (e.g.
    `data.test_files`) reach `source` through interpolation and are ignored here.
    """

    def __init__(self, source: Callable[[], DatasetSplits], name: str = "data", task: str = "binary",
                 window: int = 8, batch_size: int = 256, eval_batch_size: int = 1024,
                 sampler: str = "sqrt", val_fraction: float = 0.15, scaler: str = "standard",
                 max_categories: int = 32, numeric_bins: int = 0, bins_from: str = "quantile", frequent_values: int = 0,
                 column_order: str = "data", context_swap: float = 0.0, val_unseen_types: float = 0.0,
                 num_workers: int = 0,
                 seed: int = 0, preprocessor: Optional[FlowPreprocessor] = None, on_device: bool = False,
                 **_dataset_keys):
        super().__init__()
        if window < 1:
            raise ConfigError(f"data.window={window}: must be >= 1")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size}: must be >= 1")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction}: must be in (0, 1)")
        if not 0.0 <= context_swap <= 1.0:
            raise ConfigError(f"data.context_swap={context_swap}: must be in [0, 1] (the share of training windows "
                              "whose earlier flows come from another window)")
        if not 0.0 <= val_unseen_types < 1.0:
            raise ConfigError(f"data.val_unseen_types={val_unseen_types}: must be in [0, 1) (the share of the training "
                              "split's attack rows whose types validation holds whole; 0: off)")
        self.source, self.name, self.task, self.window = source, name, task, window
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.sampler_mode, self.val_fraction, self.scaler = sampler, val_fraction, scaler
        self.max_categories, self.numeric_bins, self.bins_from = max_categories, numeric_bins, bins_from
        self.frequent_values, self.context_swap = frequent_values, context_swap
        self.val_unseen_types = val_unseen_types
        if column_order not in COLUMN_ORDERS:
            raise ConfigError(f"data.column_order={column_order!r}: must be one of {list(COLUMN_ORDERS)}")
        self.column_order = column_order
        self.num_workers, self.seed = num_workers, seed
        self.on_device = on_device
        self.preprocessor: Optional[FlowPreprocessor] = preprocessor
        self.audit: dict = {}
        self.facts: dict = {}  # what metrics.json should say about the data as used (data/window, ...)
        self.tables: dict[str, FlowTable] = {}
        self._datasets: dict[str, FlowWindowDataset] = {}
        self._train_start: Optional[tuple[int, int]] = None
        self.novel: dict[str, np.ndarray] = {}
        self.known: dict[str, np.ndarray] = {}
        self.copied: dict[str, np.ndarray] = {}
        self.mixed: dict[str, np.ndarray] = {}
        self.val_unseen: Optional[np.ndarray] = None  # validation rows of the attack types training never sees

    # ---- setup -------------------------------------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        if self._datasets:  # one setup serves teacher, student and evaluation alike
            return
        splits = self.source()
        for note in splits.notes:
            log.info(note)
        train, val = splits.train, splits.val
        if val is None:  # by the rule the loader cut its test split by
            train, val = hold_out(train, self.val_fraction, splits.holdout, self.seed,
                                  held_source=f"{train.source} (validation carve)")
        self.holdout = splits.holdout
        self._settle_window(splits.temporal)
        if self.val_unseen_types:
            train, val = self._hold_out_types(train, val, splits.temporal)
        self.tables = {"train": train, "val": val, **{f"test_{k}": t for k, t in splits.tests.items()}}
        self.test_names = list(splits.tests)
        for table in self.tables.values():
            if len(table) == 0:
                raise DataError(f"{table.source}: the split is empty")
        self.data_classes = class_order(train)
        if len(self.data_classes) < 2:
            raise DataError(f"{train.source}: only one class ({self.data_classes}) in the training "
                            "split; a detector needs both benign and attack flows")
        in_val = class_order(val)
        if len(in_val) < 2:  # e.g. a time carve that falls between attack episodes
            log.warning("%s: validation holds only %s flows (%d), so val/f1 and val/auroc, and the checkpoint "
                        "and early stop chosen on them, say nothing; give more rows, a larger data.val_fraction, "
                        "or, for data=flows, a carve of each class by time (data.split=per_class_time)", val.source, in_val, len(val))
        if self.preprocessor is None:
            self.preprocessor = FlowPreprocessor.fit(train, scaler=self.scaler, max_categories=self.max_categories,
                                                     numeric_bins=self.numeric_bins, bins_from=self.bins_from,
                                                     frequent_values=self.frequent_values,
                                                     column_order=self.column_order, seed=self.seed)
        elif self.preprocessor.classes != self.data_classes:
            raise DataError(f"{train.source}: classes: preprocessing {self.preprocessor.classes} vs data "
                            f"{self.data_classes}; use the data config (and data.task) the model was trained with")
        for key, table in self.tables.items():
            self._datasets[key] = FlowWindowDataset.from_table(table, self.preprocessor, self.window)
            if key != "train":  # training's own folded values are logged by the fit
                for col, (rows, example) in self.preprocessor.outside_categories(table).items():
                    log.info("%s: column %r: %d row(s) hold a value outside its categories from training (e.g. "
                             "%r), read as its unknown category", table.source, col, rows, example)
        # attacks of a type the development rows (train + validation) never show: the test of
        # generalisation to new attacks (KDDTest+ holds 17 such types)
        development = concat_tables([train, val], f"{train.source} + validation")
        self.novel = {name: mask for name, table in splits.tests.items()
                      if (mask := table.novel_attacks(development)) is not None}
        # attacks of a type the training split has; a type that only validation holds (data.val_unseen_types)
        # is neither new to the development rows nor known to the model
        self.known = {name: table.is_attack() & ~table.novel_attacks(train) for name, table in splits.tests.items()
                      if name in self.novel}
        if self.window > 1:  # one-flow windows have no context to disagree with their flow
            self.mixed = {name: self._datasets[f"test_{name}"].mixed_context() for name in splits.tests}
        self._audit(train, val, splits.tests)

    def _settle_window(self, temporal: bool) -> None:
        """Rows without time order have no earlier flows: a window can only be the flow itself. Said in
        the log and, through `facts`, in metrics.json."""
        self.temporal = temporal
        self.facts = {"data/window": self.window}
        if not temporal and self.window > 1:
            note = (f"data.window={self.window} -> 1: the rows of {self.name} have no time order, so a window "
                    "can only be the flow itself")
            log.warning("%s", note)
            self.window = 1
            self.facts = {"data/window": 1, "data/window_note": note}
        if self.context_swap and self.window == 1:  # the training loader turns it off: nothing to swap
            log.warning("data.context_swap=%s has no effect: windows of one flow have no earlier flows to swap "
                        "(it needs data.window > 1 and data with time order)", self.context_swap)

    def _hold_out_types(self, train: FlowTable, val: FlowTable, temporal: bool) -> tuple[FlowTable, FlowTable]:
        """Move whole attack types from train into validation (`data.val_unseen_types`): a validation
        that scores generalisation to attack types training never saw, for choosing settings on data
        whose test set holds such types. The types are named in metrics.json (`data/val_unseen_types`)."""
        if temporal:
            raise ConfigError(f"data.val_unseen_types={self.val_unseen_types}: {self.name} is cut by time, and moving "
                              "whole attack types would tear its windows apart; use it on data without time order "
                              "(e.g. NSL-KDD), or set it to 0")
        mask, types = unseen_types_mask(train, self.val_unseen_types, self.seed)
        self.holdout = f"{self.holdout}+unseen_types"
        self.facts["data/val_unseen_types"] = ",".join(types)
        val = concat_tables([val, train.take(np.flatnonzero(mask))],
                            f"{val.source} + {len(types)} attack types held out whole")
        # the carve above already put some rows of these types into validation: all of them count
        self.val_unseen = val.is_attack() & val.frame[val.family_col].astype(str).isin(types).to_numpy()
        self.facts["data/val_unseen_type_rows"] = int(self.val_unseen.sum())
        log.info("validation holds %d attack rows of %d types training never sees: %s",
                 int(self.val_unseen.sum()), len(types), ", ".join(types))
        return train.take(np.flatnonzero(~mask)), val

    def _audit(self, train: FlowTable, val: FlowTable, tests: dict[str, FlowTable]) -> None:
        self.dev_rows, self.val_rows = rows_fingerprint([train, val]), rows_fingerprint([val])
        audit = {"preprocessing_fit_on": self.preprocessor.fit_source,
                 "preprocessing_fit_rows": self.preprocessor.fit_rows,
                 "dev_rows_fingerprint": self.dev_rows, "val_selection": self.holdout}
        for name, mask in self.novel.items():
            audit[f"novel_attack_rows_{name}"] = int(mask.sum())
        self.copied = {name: copied_rows(train, table) for name, table in tests.items()}
        for name, table in {"val": val, **tests}.items():
            dup = int((self.copied[name] if name in self.copied else copied_rows(train, table)).sum())
            audit[f"dup_train_{name}"] = dup
            audit[f"dup_train_{name}_share"] = round(dup / max(len(table), 1), 6)
            if name in tests and dup > MOSTLY_COPIED * len(table):
                log.warning("test set %s: %d of its %d rows are exact copies of training rows, so its score says "
                            "more about memory than detection; see test/fresh_rows_acc, or test on another file",
                            name, dup, len(table))
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
        return {"num_features": self.num_features, "classes": self.data_classes, "window": self.window,
                "feature_names": self.preprocessor.feature_names, "dev_rows": self.dev_rows,
                "val_rows": self.val_rows, "seed": self.seed}

    def input_columns(self) -> dict:
        """The training table's time and group columns and the format it was read as: what a deployed
        detector needs to read the same input, kept in the checkpoint so that `mstr.detect` does not
        have to read the training data again."""
        train = self.tables["train"]
        return {"time_col": train.time_col, "group_col": train.group_col, "read_as": train.read_as,
                "file_format": train.file_format}

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
        return DataLoader(IndexedWindows(dataset, self.context_swap, self.seed), batch_size=self.batch_size,
                          sampler=sampler, num_workers=self.num_workers,
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

    def test_subsets(self) -> dict[str, dict[str, np.ndarray]]:
        """Row masks per test set that metrics are also reported on: `novel_attack` (attacks of a type
        absent from train + validation, where the data names types), `known_attack` (attacks of a type the
        training split has), `copied` (rows with a
        feature-identical training row) and, with windows of several flows, `mixed_context` (rows whose
        window holds an earlier flow of another class)."""
        return {"novel_attack": self.novel, "known_attack": self.known, "copied": self.copied,
                "mixed_context": self.mixed}

    def test_loaders(self) -> dict[str, DataLoader]:
        """One loader per test set, by name; metrics are computed over all and over each."""
        return {name: self._loader(self._datasets[f"test_{name}"], train=False) for name in self.test_names}

    def dataset(self, key: str) -> FlowWindowDataset:
        return self._datasets[key]

    def flows(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(preprocessed features [rows, F], class indices [rows]) of one split, one row per flow: the
        window-1 view, for models that see single flows (the peers)."""
        dataset = self._datasets[key]
        return dataset.features.numpy(), dataset.labels.numpy()
