"""Inference on windows of one flow with the batch on the map's last axis, for exported detectors.

A window of one flow gives maps `[batch, channels, 1, columns]`, and ONNX Runtime convolves each flow's
1 x columns map on its own: per layer, thousands of matrix products a few channels tall. Laid out as
`[1, channels, columns, batch]`, the same convolutions (each kernel turned to run down the column axis,
now the map's third) are one product per layer over the whole batch; batch norm, the 1x1 fuse and the
residual path are per position and run unchanged. The exported NSL-KDD student scores 1.34x the flows/s
this way (README, speed section). Same weights and the same numbers: `mstr.export` checks every export
against the PyTorch model on real windows, and `tests/test_backbone.py` checks each backbone option.
"""

from __future__ import annotations

import torch
from torch import nn

from mstr.models.backbone import MultiScaleSTResNet
from mstr.models.inference_form import InferenceForm
from mstr.models.tokenizer import FeatureTokenizer


class BatchLastWindowOne(InferenceForm):
    """`net`'s logits for windows `[batch, 1, features]`, computed batch-last (inference only)."""

    refusal = "the batch-last layout needs windows of one flow and the per-column token stem"

    @staticmethod
    def applies(net: nn.Module) -> bool:
        return isinstance(net, MultiScaleSTResNet) and net.window == 1 and isinstance(net.stem, FeatureTokenizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        h = net.stem.batch_last(x)
        for stage in net.stages:
            for block in stage:
                h = block(h, batch_last=True)
        h = net.squeeze(h)
        # from the config, not h.shape: constants in an exported graph, no shape arithmetic
        channels, columns = net.config.readout_channels or net.config.widths[-1], net.stem.num_tokens
        # [features of a flow, batch]: flattened channel-major like the batch-first readout
        h = h.reshape(channels * columns, -1) if net.config.readout == "flatten" else h.mean(dim=2).reshape(channels, -1)
        *hidden, last = [layer for layer in net.head if not isinstance(layer, nn.Dropout)]
        for layer in hidden:  # a hidden Linear and its activation, flows as columns
            h = layer.weight @ h + layer.bias.reshape(-1, 1) if isinstance(layer, nn.Linear) else layer(h)
        # logits [batch, classes]: ONNX Runtime folds the transposes into one product (Gemm)
        return h.t() @ last.weight.t() + last.bias
