"""Causal windows over a flow table, by index.

Every flow is the newest flow of one window; the window holds it and up to `window - 1` earlier
flows of the same group (e.g. the same source host), in time order. Earlier positions that do not
exist (the start of a group) are zero rows, i.e. the training mean after standard scaling.
A dataset holds one split only, so windows can never cross a split boundary, and it stores the
features once: a window is gathered on demand from `[rows]` indices, never materialised W times.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from mstr.data.preprocessing import FlowPreprocessor
    from mstr.data.table import FlowTable


def sequence_order(time: Optional[np.ndarray], group: Optional[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row order sorted by (group, time) and, per position, where its group's run starts.

    Returns `order` (row index at each sequence position) and `run_start` (the first position of
    the group of each position). Without time the given row order is kept; without groups the whole
    table is one run.
    """
    keys = []
    if time is not None:
        keys.append(np.asarray(time))
    if group is not None:
        _, group_codes = np.unique(np.asarray(group).astype(str), return_inverse=True)
        keys.append(group_codes)
    order = np.lexsort(keys) if keys else np.arange(n)  # lexsort: last key primary (group, then time)
    if group is None:
        return order, np.zeros(n, dtype=np.int64)
    sorted_groups = group_codes[order]
    new_run = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
    return order.astype(np.int64), run_start.astype(np.int64)


class FlowWindowDataset(Dataset):
    """Windows `[window, features]` ending at each flow of one split, labelled by that flow.

    Item i is the window whose newest flow is row i of the split (so labels line up with rows).
    Supports batched fetching (`__getitems__`), which the DataLoader uses to gather a whole batch
    with one vectorised index instead of `batch_size` Python calls.
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray, window: int,
                 time: Optional[np.ndarray] = None, group: Optional[np.ndarray] = None):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        n = len(features)
        self.features = torch.as_tensor(features, dtype=torch.float32)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.window = window
        order, run_start = sequence_order(time, group, n)
        position = np.empty(n, dtype=np.int64)
        position[order] = np.arange(n)
        self._order = torch.as_tensor(order)
        self._position = torch.as_tensor(position)
        self._run_start = torch.as_tensor(run_start)
        self._offsets = torch.arange(-window + 1, 1)

    @classmethod
    def from_table(cls, table: "FlowTable", preprocessor: "FlowPreprocessor", window: int) -> "FlowWindowDataset":
        """Windows over one split, its features transformed by the given (fitted) preprocessor and
        ordered by the table's time and group columns."""
        time = table.frame[table.time_col].to_numpy() if table.time_col else None
        group = table.frame[table.group_col].to_numpy() if table.group_col else None
        return cls(preprocessor.transform(table), preprocessor.encode_labels(table), window, time=time, group=group)

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device) -> "FlowWindowDataset":
        """The same windows with every tensor on `device`: batches are then gathered there (no host
        work, no copy per batch), for splits that fit in its memory."""
        moved = copy.copy(self)
        for name in ("features", "labels", "_order", "_position", "_run_start", "_offsets"):
            setattr(moved, name, getattr(self, name).to(device))
        return moved

    def window_rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices `[len(idx), window]` of each window, oldest first, and a validity mask."""
        pos = self._position[idx]
        positions = pos[:, None] + self._offsets[None, :]
        valid = positions >= self._run_start[pos][:, None]
        rows = self._order[positions.clamp(min=0)]
        return rows, valid

    def mixed_context(self, chunk: int = 1 << 20) -> np.ndarray:
        """Rows whose window holds an earlier flow of another class than the newest flow's: where the
        context says one thing and the flow's own label another (a benign flow right after its host's
        attack flows). A model that reads the label off the context fails exactly there."""
        mixed = np.zeros(len(self), dtype=bool)
        for start in range(0, len(self), chunk):
            rows, valid = self.window_rows(torch.arange(start, min(start + chunk, len(self))))
            labels = self.labels[rows]
            mixed[start:start + len(rows)] = ((labels[:, :-1] != labels[:, -1:]) & valid[:, :-1]).any(1).numpy()
        return mixed

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.features.device)
        rows, valid = self.window_rows(idx)
        x = self.features[rows] * valid.unsqueeze(-1)
        return x, self.labels[idx]

    def __getitem__(self, i: int):
        x, y = self.gather(torch.tensor([i]))
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]):
        x, y = self.gather(torch.as_tensor(indices, dtype=torch.long))
        return x, y


class IndexedWindows(Dataset):
    """A split's windows with their row indices: `(x, y, index, swapped)` batches, so a training step
    can look up per-row data computed once (a distillation teacher's targets) instead of recomputing
    it. `swapped` marks the windows that are not the split's own window at their index (see below):
    per-row data computed from a window holds for them only if it reads the newest flow alone.

    `context_swap` > 0: that share of each batch's windows keep their newest flow (and its label) but
    take their earlier flows from another window of the batch. Where a group's flows are nearly always
    one class (a sampled capture: an attacker's flows next to each other), a model learns to read the
    label off the context, and then flags the rare benign flow between attack flows; mixed windows teach
    it that the newest flow decides. The draw depends on the batch's indices and the seed only, so a
    resumed run sees the same windows.
    """

    def __init__(self, windows: FlowWindowDataset, context_swap: float = 0.0, seed: int = 0):
        self.windows = windows
        self.context_swap = float(context_swap) if windows.window > 1 else 0.0
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitems__(self, indices: Sequence[int]):
        index = torch.as_tensor(indices, dtype=torch.long)
        x, y = self.windows.gather(index)
        swapped = torch.zeros(len(index), dtype=torch.bool, device=x.device)
        if self.context_swap > 0.0:
            x, swapped = self._swap_context(x, index)
        return x, y, index, swapped

    def _swap_context(self, x: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch_key = (self.seed, len(index), int(index[0]), int(index.sum()))
        generator = torch.Generator().manual_seed(hash(batch_key) % 2**63)
        swapped = torch.rand(len(index), generator=generator) < self.context_swap
        other = torch.randint(0, len(index), (len(index),), generator=generator)
        swapped &= other != torch.arange(len(index))  # a window given its own context is unchanged
        rows = swapped.nonzero().squeeze(1).to(x.device)
        x = x.clone()
        x[rows, :-1] = x[other.to(x.device)[rows], :-1]
        return x, swapped.to(x.device)


def collate_prebatched(batch):
    """`__getitems__` already returns a stacked batch; the DataLoader must pass it through."""
    return batch
