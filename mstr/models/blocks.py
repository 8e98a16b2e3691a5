"""The multi-scale residual spatio-temporal block.

Maps are `[batch, channels, time, features]`: time is the window's flow axis (oldest first), features
is the flow's column axis (one token per real column, see `tokenizer.py`). Parallel branches look at
different receptive fields:
- feature branches convolve along the column axis with kernel sizes `feature_kernels` (which columns
  are read together: 1 = each column alone, 3 / 5 = a column with its neighbours), and optionally one
  branch whose kernel spans the whole row (`RowConv`: the coarsest scale, one summary of all columns
  handed to every column, so that columns far apart on the axis can interact before the head);
- time branches convolve each column along the window with kernel `time_kernel` and dilations
  `time_dilations`, causally (left padding only), so a position never sees later flows. They exist
  only when the window holds more than one flow: with window 1 they would only ever see padding.
Branches are concatenated, normalised, fused by a 1x1 convolution and added to the residual path
(identity, or a 1x1 projection when the channel count changes).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn


class FlowSelection(NamedTuple):
    """Which flows of its input map a block computes (inference only, `mstr/models/newest_flow.py`).

    The input map holds flows `step` apart in the window (so every time tap, a multiple of `step`,
    lands on a flow of the map); the block computes `count` of them, from index `first` of the map,
    `stride` apart, the last being the map's last (the newest flow).
    """

    step: int
    first: int
    stride: int
    count: int

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """The selected flows of `x` themselves (per-flow paths: feature branches, residual)."""
        return x[:, :, self.first::self.stride]


class AxisMultiScaleConv(nn.Module):
    """Several branches along one axis (`"time"` or `"features"`), each a set of tap offsets, run as
    one convolution whose kernel is assembled from the branches' weights (zero where a branch has no
    tap). Same result as separate convolutions concatenated, at one call's overhead, which is what
    dominates at the few channels of a student.
    """

    def __init__(self, in_ch: int, branch_ch: int, branch_offsets: list[list[int]], axis: str):
        super().__init__()
        if axis not in ("time", "features"):
            raise ValueError(f"axis must be 'time' or 'features', got {axis!r}")
        self.axis = axis
        self.taps = sorted({o for offsets in branch_offsets for o in offsets})
        low, high = self.taps[0], self.taps[-1]
        self.span, self.pad_before, self.pad_after = high - low + 1, -low, high
        self.branch_weights = nn.ParameterList(
            nn.Parameter(torch.empty(branch_ch, in_ch, len(offsets))) for offsets in branch_offsets
        )
        for w in self.branch_weights:
            nn.init.kaiming_uniform_(w, a=5 ** 0.5)
        # Where each branch weight lands in the flat composite kernel [branches*branch_ch, in_ch, span];
        # the last slot of the source vector is a zero for every tap no branch has.
        total = len(branch_offsets) * branch_ch * in_ch * self.span
        source = torch.full((total,), -1, dtype=torch.long)
        composite = torch.arange(total).view(len(branch_offsets), branch_ch, in_ch, self.span)
        start = 0
        for b, offsets in enumerate(branch_offsets):
            n = branch_ch * in_ch * len(offsets)
            taps = torch.tensor([o - low for o in offsets])
            source[composite[b][:, :, taps].reshape(-1)] = torch.arange(start, start + n)
            start += n
        source[source < 0] = start
        self.register_buffer("source", source, persistent=False)
        self.out_channels = len(branch_offsets) * branch_ch

    def kernel(self) -> torch.Tensor:
        flat = torch.cat([w.reshape(-1) for w in self.branch_weights] + [self.branch_weights[0].new_zeros(1)])
        kernel = flat[self.source].view(self.out_channels, -1, self.span)
        return kernel.unsqueeze(-1) if self.axis == "time" else kernel.unsqueeze(-2)

    def forward(self, x: torch.Tensor, batch_last: bool = False,
                select: Optional[FlowSelection] = None) -> torch.Tensor:
        """`select`: only those flows of the map are computed (inference only, see FlowSelection)."""
        time = self.axis == "time"
        if select is not None:
            if not time:
                return F.conv2d(select.rows(x), self.kernel(), padding=(0, self.pad_before))
            # the taps on the map's flows only (all are multiples of its step), and as many before
            kernel, reach = self.kernel()[:, :, ::select.step], self.pad_before // select.step
            if select.count == 1:  # one flow: taps that would read before the map (zeros) are cropped
                start = select.first - reach
                return F.conv2d(x[:, :, max(0, start):select.first + 1], kernel[:, :, max(0, -start):])
            if select.first < reach:  # zeros before the map, folded into the convolution by ONNX Runtime
                x = F.pad(x, (0, 0, reach - select.first, 0))
            else:
                x = x[:, :, select.first - reach:]
            return F.conv2d(x, kernel, stride=(select.stride, 1))
        if batch_last:  # maps [1, C, columns, batch] (window 1, feature taps, which are centred): the
            # kernel turned to run down the column axis, now the map's third
            return F.conv2d(x, self.kernel().transpose(2, 3), padding=(self.pad_before, 0))
        if self.pad_before == self.pad_after:
            # Centred taps: the convolution's own padding, not a padded copy of the map (a fill and a
            # copy each way, ~5% of a student's training step on a CPU).
            return F.conv2d(x, self.kernel(), padding=(self.pad_before, 0) if time else (0, self.pad_before))
        # One-sided taps (causal time branches): pad explicitly on the side the taps reach.
        pad = (0, 0, self.pad_before, self.pad_after) if time else (self.pad_before, self.pad_after, 0, 0)
        return F.conv2d(F.pad(x, pad), self.kernel())


class RowConv(nn.Module):
    """A feature-axis branch whose kernel spans all `columns`: each output channel is one weighted sum
    over every column of the flow (column-specific weights), broadcast back to every column position.
    Local kernels only let neighbouring columns meet before the linear head; this branch is what lets
    a flow's TTL meet its byte counts 20 columns away, at `columns x in_ch x out_ch` weights."""

    def __init__(self, in_ch: int, out_ch: int, columns: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, (1, columns), bias=False)
        self.columns, self.out_channels = columns, out_ch

    def summary(self, x: torch.Tensor, batch_last: bool = False) -> torch.Tensor:
        """[batch, out_ch, time, 1] (batch last: [1, out_ch, 1, batch]): the row's summary, before it is
        handed to the columns."""
        width = self.conv.in_channels * self.columns  # constants, so an exported graph has no shape arithmetic
        weight = self.conv.weight.reshape(self.out_channels, width)
        if batch_last:
            return (weight @ x.reshape(width, -1)).view(1, self.out_channels, 1, -1)
        if x.shape[2] > 1:
            return self.conv(x)
        # One flow: a plain product of the flattened map. ONNX Runtime runs a convolution whose kernel
        # is as wide as the row through a copy of the map per output (17% of a UNSW-NB15 student's time).
        return (x.reshape(-1, width) @ weight.t()).reshape(-1, self.out_channels, 1, 1)

    def forward(self, x: torch.Tensor, batch_last: bool = False,
                select: Optional[FlowSelection] = None) -> torch.Tensor:
        # A repeat by a constant, not an expand to x's shape: exported, that is one Tile, with no shape
        # arithmetic (Shape, Gather, Equal) on the activations.
        if select is not None:  # a row kernel spans one flow
            x = select.rows(x)
        if batch_last:
            return self.summary(x, True).repeat(1, 1, self.columns, 1)
        return self.conv(x).repeat(1, 1, 1, self.columns)


def feature_offsets(kernels: list[int]) -> list[list[int]]:
    """Centred taps along the column axis: kernel k reads a column and its k // 2 neighbours each side."""
    return [list(range(-(k // 2), k // 2 + 1)) for k in kernels]


def time_offsets(kernel: int, dilations: list[int]) -> list[list[int]]:
    """Causal taps along the window: the current flow and `kernel - 1` earlier ones, `dilation` apart."""
    return [[-(kernel - 1 - i) * d for i in range(kernel)] for d in dilations]


class MultiScaleResidualBlock(nn.Module):
    """Parallel feature-axis and (with a window) time-axis branches, fused, plus a residual path."""

    def __init__(self, in_ch: int, out_ch: int, feature_kernels: list[int], time_kernel: int = 3,
                 time_dilations: list[int] = (1, 2), temporal: bool = True, residual: bool = True,
                 dropout: float = 0.0, row_columns: int = 0):
        super().__init__()
        n_branches = len(feature_kernels) + (len(time_dilations) if temporal else 0) + (row_columns > 0)
        if n_branches == 0:
            raise ValueError("a block needs at least one feature kernel (or, with a window, a time dilation)")
        branch_ch = max(1, out_ch // n_branches)
        self.convs = nn.ModuleList()
        if feature_kernels:
            self.convs.append(AxisMultiScaleConv(in_ch, branch_ch, feature_offsets(feature_kernels), "features"))
        if temporal and time_dilations:
            self.convs.append(AxisMultiScaleConv(in_ch, branch_ch, time_offsets(time_kernel, time_dilations), "time"))
        if row_columns:
            self.convs.append(RowConv(in_ch, branch_ch, row_columns))
        concat = sum(c.out_channels for c in self.convs)
        # One normalisation per block, on the branches: at a student's few channels every extra
        # batch norm costs more time than its convolution.
        self.norm = nn.BatchNorm2d(concat)
        self.fuse = nn.Conv2d(concat, out_ch, 1)
        if not residual:
            self.residual = None
        elif in_ch == out_ch:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.out_channels = out_ch

    def time_taps(self) -> list[int]:
        """The offsets along the window its output at a flow reads (0: the flow itself)."""
        return sorted({0, *(o for conv in self.convs if getattr(conv, "axis", None) == "time" for o in conv.taps)})

    def forward(self, x: torch.Tensor, batch_last: bool = False,
                select: Optional[FlowSelection] = None) -> torch.Tensor:
        """`batch_last`: maps [1, channels, columns, batch] of windows of one flow (inference only; see
        `mstr/models/batch_last.py`). `select`: only those flows of the map are computed (inference
        only; `mstr/models/newest_flow.py`). Batch norm, fuse and residual are per position either way."""
        if not self.training and len(self.convs) > 1 and isinstance(self.convs[-1], RowConv):
            return self._forward_row_apart(x, batch_last, select)
        branches = [conv(x, batch_last, select) for conv in self.convs]
        branches = torch.cat(branches, dim=1) if len(branches) > 1 else branches[0]
        if self.training and x.device.type == "cpu":
            # On a CPU the convolutions run fastest channels-last (the tokenizer's map is laid out so)
            # but batch norm's training kernels are 2.5x slower on that layout: normalise a plain copy,
            # then hand the fuse convolution channels-last again (+40% training windows/s here).
            h = F.relu(self.norm(branches.contiguous())).contiguous(memory_format=torch.channels_last)
        else:
            h = F.relu(self.norm(branches))
        fused = self.dropout(self.fuse(h))
        if self.residual is not None:
            fused = fused + self.residual(x if select is None else select.rows(x))
        return F.relu(fused)

    def _forward_row_apart(self, x: torch.Tensor, batch_last: bool = False,
                           select: Optional[FlowSelection] = None) -> torch.Tensor:
        """Inference with a row branch, without copying its summary to every column: batch norm is per
        channel and the fuse is linear, so the row's channels can be normalised and fused at one
        position and the result broadcast in the sum. The same numbers as the concatenated path, and
        no Tile or Concat of full maps in an exported graph (the copies cost ~18% of a student's
        ONNX throughput)."""
        row = self.convs[-1]
        local = [conv(x, batch_last, select) for conv in self.convs[:-1]]
        if select is not None:  # from here on every path reads the selected flows only
            x = select.rows(x)
        local = torch.cat(local, dim=1) if len(local) > 1 else local[0]
        n, k = self.norm, sum(conv.out_channels for conv in self.convs[:-1])  # a constant when exported

        def normalised(h: torch.Tensor, part: slice) -> torch.Tensor:
            return F.relu(F.batch_norm(h, n.running_mean[part], n.running_var[part], n.weight[part], n.bias[part],
                                       False, 0.0, n.eps))

        w = self.fuse.weight
        skip = F.conv2d(normalised(row.summary(x, batch_last), slice(k, None)), w[:, k:])
        if self.residual is not None:
            skip = skip + self.residual(x)
        # The full-map sum last, beside the ReLU: ONNX Runtime folds both into the local fuse convolution.
        return F.relu(F.conv2d(normalised(local, slice(0, k)), w[:, :k], self.fuse.bias) + skip)
