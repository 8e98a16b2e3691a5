"""Inference on windows of several flows that computes the last block at the newest flow only.

The readout reads one position of the last block's map: the newest flow's, where the causal time
branches have already gathered the window's context. Every other position of that block is computed
and thrown away: with windows of 8 flows, 7/8 of its work, and its causal padding (a copy of the
map that took a fifth of an exported CIC-IDS2017 student's time in ONNX Runtime). Earlier blocks
still compute every position, since the last block's time taps read them. Same weights and the same
numbers: `mstr.export` checks every export against the PyTorch model on real windows, and
`tests/test_backbone.py` checks each backbone option.
"""

from __future__ import annotations

import torch
from torch import nn

from mstr.models.backbone import MultiScaleSTResNet


class NewestFlowOnly(nn.Module):
    """`net`'s logits for windows `[batch, window, features]` of several flows (inference only)."""

    def __init__(self, net: MultiScaleSTResNet):
        super().__init__()
        if not self.applies(net):
            raise ValueError("computing the newest flow only needs a backbone with windows of several flows")
        self.net = net
        self.eval()  # and stays so: an exporter restores the mode it found, on `net` too

    @staticmethod
    def applies(net: nn.Module) -> bool:
        return isinstance(net, MultiScaleSTResNet) and net.window > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        *blocks, last = [block for stage in net.stages for block in stage]
        h = net.stem(x)
        for block in blocks:
            h = block(h)
        return net.head(net.readout(last(h, newest=net.window)))
