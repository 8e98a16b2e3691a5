"""Inference on windows of several flows that computes each block only at the flows read downstream.

The readout reads one position of the last block's map: the newest flow's, where the causal time
branches have already gathered the window's context. So the last block is needed at the newest flow
only, the block before it only at the flows the last block's time taps read (with dilations 3 and 6
in a window of 8: 3 of the 8), and so on back to the tokenizer. `flow_plan` works that out from the
blocks' taps; `NewestFlowOnly` runs each block on its flows alone (`FlowSelection`). The rest was
computed and thrown away: with windows of 8 flows, 7/8 of the last block's work and 5/8 of the one
before, and the causal padding (a copy of the map that took a fifth of an exported CIC-IDS2017
student's time in ONNX Runtime). Same weights and the same numbers: `mstr.export` checks every export
against the PyTorch model on real windows, and `tests/test_backbone.py` checks each backbone option.
"""

from __future__ import annotations

from math import gcd

import torch
from torch import nn

from mstr.models.backbone import MultiScaleSTResNet
from mstr.models.blocks import FlowSelection, MultiScaleResidualBlock
from mstr.models.inference_form import InferenceForm


def flow_plan(blocks: list[MultiScaleResidualBlock], window: int) -> tuple[tuple[int, int], list[FlowSelection]]:
    """((first flow, step) of the window the stem must give the first block, one FlowSelection per
    block), from the last block back: a block's input holds every flow its selected flows' taps reach
    inside the window, as an evenly spaced run ending at the newest flow."""
    selections = []
    first, step, count = window - 1, 1, 1  # the last block's output: the newest flow
    for block in reversed(blocks):
        taps = block.time_taps()
        # every tap and every gap between selected flows a multiple of the input's spacing
        step_in = gcd(*taps, step if count > 1 else 0) or 1
        reached = [f + o for f in range(first, window, step) for o in taps if f + o >= 0]
        first_in = min(reached)
        selections.append(FlowSelection(step_in, (first - first_in) // step_in,
                                        step // step_in if count > 1 else 1, count))
        first, step, count = first_in, step_in, (window - 1 - first_in) // step_in + 1
    return (first, step), selections[::-1]


class NewestFlowOnly(InferenceForm):
    """`net`'s logits for windows `[batch, window, features]` of several flows (inference only)."""

    refusal = "computing the newest flow only needs a backbone with windows of several flows"

    def __init__(self, net: MultiScaleSTResNet):
        super().__init__(net)
        self.blocks = [block for stage in net.stages for block in stage]
        (self.first, self.step), self.selections = flow_plan(self.blocks, net.window)

    @staticmethod
    def applies(net: nn.Module) -> bool:
        return isinstance(net, MultiScaleSTResNet) and net.window > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the stem embeds each flow alone: only the flows the first block reads
        h = self.net.stem(x[:, self.first::self.step] if (self.first, self.step) != (0, 1) else x)
        for block, select in zip(self.blocks, self.selections):
            h = block(h, select=select)
        return self.net.head(self.net.readout(h))
