"""The multi-scale residual spatio-temporal block.

Input and output are maps `[batch, channels, time, space]`: time is the window's flow axis (oldest
first), space is the per-flow feature axis after the stem's embedding. Parallel branches look at
different receptive fields: spatial branches convolve along the feature axis with kernel sizes
`spatial_kernels`, temporal branches along the time axis with kernel `temporal_kernel` and
dilations `temporal_dilations`. Temporal convolutions are causal (left padding only), so a window's
newest position never sees the future and the block works for any window length >= 1.
Branches are concatenated, fused by a 1x1 convolution, normalised, and added to the residual path
(identity, or a 1x1 projection when channels or stride change).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(in_ch: int, out_ch: int, kernel: tuple[int, int], dilation: tuple[int, int] = (1, 1),
          stride: tuple[int, int] = (1, 1), separable: bool = False) -> nn.Module:
    """A conv with no padding (the branch pads); depthwise-separable when asked and worth it."""
    if separable and kernel != (1, 1) and in_ch > 1:
        return nn.Sequential(
            nn.Conv2d(in_ch, in_ch, kernel, stride=stride, dilation=dilation, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
        )
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, dilation=dilation, bias=False)


class Branch(nn.Module):
    """One receptive field: a (k_time x k_space) conv with causal time padding and same space padding."""

    def __init__(self, in_ch: int, out_ch: int, k_time: int, k_space: int, dilation_time: int,
                 stride_space: int, separable: bool):
        super().__init__()
        self.pad_time = (k_time - 1) * dilation_time
        self.pad_space = k_space // 2
        self.conv = _conv(in_ch, out_ch, (k_time, k_space), (dilation_time, 1), (1, stride_space), separable)
        self.norm = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad_space, self.pad_space, self.pad_time, 0))
        return F.gelu(self.norm(self.conv(x)))


class MultiScaleResidualBlock(nn.Module):
    """Parallel spatial and temporal branches, fused, plus a residual path."""

    def __init__(self, in_ch: int, out_ch: int, spatial_kernels=(1, 3, 5), temporal_kernel: int = 3,
                 temporal_dilations=(1, 2), stride_space: int = 1, separable: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        specs = [(1, k, 1) for k in spatial_kernels] + [(temporal_kernel, 1, d) for d in temporal_dilations]
        if not specs:
            raise ValueError("a block needs at least one spatial kernel or temporal dilation")
        branch_ch = max(1, out_ch // len(specs))
        self.branches = nn.ModuleList(
            Branch(in_ch, branch_ch, kt, ks, d, stride_space, separable) for kt, ks, d in specs
        )
        self.fuse = nn.Sequential(nn.Conv2d(branch_ch * len(specs), out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        if in_ch == out_ch and stride_space == 1:
            self.residual: nn.Module = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=(1, stride_space), bias=False),
                                          nn.BatchNorm2d(out_ch))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))
        return F.gelu(self.dropout(fused) + self.residual(x))
