"""From a flow's flat feature vector to one embedding per *real* feature (a token per column).

The preprocessing emits a flat vector: per numeric column its scaled value (and, with
`data.numeric_bins`, its piecewise-linear bin encoding), per categorical column a one-hot block.
`FeatureLayout` says which flat positions belong to which column, and in which order the columns
stand on the feature axis (the dataset's own column order, which keeps related columns together).

`FeatureTokenizer` gives every flat position its own weight vector and every column a bias, and sums
each column's contributions: a numeric value becomes `value * w + b` (plus one learned vector per bin
it has passed: a piecewise-linear embedding), a category becomes its embedding row. The result is a
map `[batch, channels, time, columns]` whose feature axis is the flow's real feature axis, so the
backbone's feature convolutions slide over actual neighbouring columns, never over a learned
bottleneck whose coordinates have no order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


@dataclass
class FeatureLayout:
    """Which flat input positions form each column's token, and the columns' order on the feature axis.

    `tokens[k]` lists the flat positions of column k (its scaled value first, then its bins or its
    one-hot block); `names[k]` is the column's name. Tokens are already in feature-axis order.
    """

    tokens: list[list[int]]
    names: list[str]

    @classmethod
    def identity(cls, num_features: int) -> "FeatureLayout":
        """Every flat feature its own token (data whose columns are not described)."""
        return cls([[i] for i in range(num_features)], [f"f{i}" for i in range(num_features)])

    @classmethod
    def from_dict(cls, values: Optional[dict], num_features: int) -> "FeatureLayout":
        if not values:
            return cls.identity(num_features)
        layout = cls([list(map(int, t)) for t in values["tokens"]], list(values["names"]))
        layout.check(num_features)
        return layout

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "names": self.names}

    def check(self, num_features: int) -> None:
        flat = sorted(p for token in self.tokens for p in token)
        if flat != list(range(num_features)) or len(self.names) != len(self.tokens) or any(not t for t in self.tokens):
            raise ValueError(f"feature layout does not cover the {num_features} inputs exactly once "
                             f"({len(flat)} positions in {len(self.tokens)} tokens)")

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)


class FeatureTokenizer(nn.Module):
    """`[batch, time, flat features]` -> `[batch, dim, time, tokens]`, one embedding per column.

    Each flat position has its own weight vector (`weight`, listed token by token) and each column a
    bias. The forward pass scatters the weights into a dense block-sparse `[flat, tokens * dim]` matrix
    and multiplies once: ten times faster on a CPU than gathering and segment-summing the positions,
    and plain ops for ONNX. Only the listed weights are parameters.
    """

    def __init__(self, layout: FeatureLayout, dim: int):
        super().__init__()
        positions = [p for token in layout.tokens for p in token]
        token_of = [k for k, token in enumerate(layout.tokens) for _ in token]
        self.register_buffer("positions", torch.tensor(positions, dtype=torch.long), persistent=False)
        self.register_buffer("token_of", torch.tensor(token_of, dtype=torch.long), persistent=False)
        self.weight = nn.Parameter(torch.randn(len(positions), dim) * 0.5)
        self.bias = nn.Parameter(torch.zeros(layout.num_tokens, dim))
        self.num_inputs, self.num_tokens, self.dim = len(positions), layout.num_tokens, dim
        # the exported graph's runs of columns (`batch_last`), fixed by the layout
        self.runs = token_runs([len(token) for token in layout.tokens], dim)

    def _dense(self) -> torch.Tensor:
        """The weights as a dense block-sparse [flat inputs, tokens, dim] tensor."""
        dense = self.weight.new_zeros(self.num_inputs, self.num_tokens, self.dim)
        return dense.index_put((self.positions, self.token_of), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = self._dense()
        if torch.onnx.is_in_onnx_export():
            return self._channels_first(x, dense)
        tokens = (x @ dense.view(self.num_inputs, -1)).view(*x.shape[:-1], self.num_tokens, self.dim)
        # A view, channels-last in memory: PyTorch's CPU convolutions run fastest on that layout.
        return (tokens + self.bias).permute(0, 3, 1, 2)

    def _channels_first(self, x: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """The same map computed channels-first, for ONNX Runtime, which would otherwise materialise the
        permute as a Transpose that took 40% of an NSL-KDD student's inference time. With the matrix's
        columns ordered (channel, token) the product is already [batch, time, dim, tokens]; only the
        window and channel axes swap, which is a reshape for a window of one flow. One dense product:
        `batch_last`'s runs, joined here on the innermost axis, cost a CIC-IDS2017 student as much as they
        saved (1.04x), and joined token-major, with the whole map transposed after, 0.78x."""
        window = int(x.shape[1])  # a constant of the exported graph: only the batch axis is dynamic
        # flows as rows of one 2-D product with the bias in it (a Gemm; a 3-D MatMul leaves a separate
        # Add over the whole map, a tenth of a CIC-IDS2017 student's time)
        weight = dense.permute(0, 2, 1).reshape(self.num_inputs, -1)
        maps = x.reshape(-1, self.num_inputs) @ weight + self.bias.t().reshape(-1)
        if window == 1:
            return maps.view(-1, self.dim, 1, self.num_tokens)
        return maps.view(-1, window, self.dim, self.num_tokens).transpose(1, 2)

    def batch_last(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, 1, flat features] -> [1, dim, tokens, batch]: the map of windows of one flow with the
        batch on the last axis (see `mstr/models/batch_last.py`), the flows as columns.

        The dense matrix is almost all zeros (each column's token reads only its own inputs: 196 x 164
        multiply-adds per NSL-KDD flow where 784 are not zero), so the feature axis is cut into runs of
        consecutive tokens (`token_runs`), each one small product over just its own inputs with its bias
        in it, and the runs' maps are joined on the token axis. The inputs are transposed once, so that
        every run gathers whole rows of flows. Same weights, same numbers as the dense product.
        Only in the exported graph: in PyTorch each product's own overhead made the runs slower at
        `mstr.detect`'s batch of 256 (0.88x), so there the product stays one."""
        dense = self._dense()
        flows = x.reshape(-1, self.num_inputs).t()
        if len(self.runs) == 1 or not torch.onnx.is_in_onnx_export():
            # one product over every input as they are (ONNX Runtime folds the transpose into it)
            weight = dense.permute(2, 1, 0).reshape(-1, self.num_inputs)
            return (weight @ flows + self.bias.t().reshape(-1, 1)).view(1, self.dim, self.num_tokens, -1)
        maps = []
        for first, end in self.runs:
            rows = self.positions[(self.token_of >= first) & (self.token_of < end)].sort().values
            weight = dense[rows, first:end].permute(2, 1, 0).reshape(-1, len(rows))
            bias = self.bias[first:end].t().reshape(-1, 1)
            maps.append((weight @ flows[rows] + bias).view(self.dim, end - first, -1))
        return torch.cat(maps, dim=1).unsqueeze(0)


# What one more product costs ONNX Runtime besides its multiply-adds, in multiply-adds per flow: exported
# NSL-KDD and UNSW-NB15 students at batch 4096 ran alike with runs planned at 200, 500 or 1,000 here, and
# slower at 2,000 or more (fewer, larger runs; README, speed section).
RUN_COST = 500


def token_runs(sizes: list[int], dim: int, run_cost: int = RUN_COST) -> list[tuple[int, int]]:
    """Cut tokens `0..len(sizes)` (token k reads `sizes[k]` inputs) into runs `[first, end)` of consecutive
    tokens that minimise the multiply-adds of one dense product per run (`dim x tokens x inputs` of the
    run) plus `run_cost` per run: a shortest path over the cut points."""
    ends = [0]
    for size in sizes:
        ends.append(ends[-1] + size)
    best, cut = [0] + [None] * len(sizes), [0] * (len(sizes) + 1)
    for end in range(1, len(sizes) + 1):
        for first in range(end):
            cost = best[first] + dim * (end - first) * (ends[end] - ends[first]) + run_cost
            if best[end] is None or cost < best[end]:
                best[end], cut[end] = cost, first
    runs, end = [], len(sizes)
    while end:
        runs.append((cut[end], end))
        end = cut[end]
    return runs[::-1]


class LinearStem(nn.Module):
    """The ablation's alternative: a learned linear embedding of the whole flow to `dim` numbers, laid
    out as a 'feature axis' of `dim` positions with one channel (coordinates with no order)."""

    def __init__(self, num_features: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(num_features, dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).unsqueeze(1)  # [B, 1, T, dim]
