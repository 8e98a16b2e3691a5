"""Inference forms: a backbone's logits computed in another arrangement, for a deployed detector.

Each form applies to some backbones only (`applies`) and refuses the others; it holds the network
unchanged and stays in eval mode. `mstr.export`, `mstr.detect` and the speed bench run a network
through `Form.of(net)`: the form where it applies, the network itself elsewhere.
"""

from __future__ import annotations

from torch import nn


class InferenceForm(nn.Module):
    refusal = ""  # the error for a backbone the form does not apply to

    def __init__(self, net: nn.Module):
        super().__init__()
        if not self.applies(net):
            raise ValueError(self.refusal)
        self.net = net
        self.eval()  # and stays so: an exporter restores the mode it found, on `net` too

    @staticmethod
    def applies(net: nn.Module) -> bool:
        raise NotImplementedError

    @classmethod
    def of(cls, net: nn.Module) -> nn.Module:
        return cls(net) if cls.applies(net) else net
