"""The one backbone builder: a config -> `MultiScaleSTResNet`, teacher and student alike.

    [batch, window, features]
      -> stem: per-flow linear embedding to `embed_dim` (the "spatial" axis the convs slide over)
      -> stages of MultiScaleResidualBlocks (the first block of a stage may stride the spatial axis)
      -> readout: the newest flow's position (causal convs gave it the whole window's context)
         and the mean over the window, each pooled over space
      -> classifier head -> logits [batch, num_classes]

Teacher and student differ only in `BackboneConfig` values (widths, depth, kernels, separable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mstr.models.blocks import MultiScaleResidualBlock


@dataclass
class BackboneConfig:
    embed_dim: int = 32
    widths: list[int] = field(default_factory=lambda: [32, 64])
    blocks_per_stage: int = 1
    spatial_kernels: list[int] = field(default_factory=lambda: [1, 3, 5])
    temporal_kernel: int = 3
    temporal_dilations: list[int] = field(default_factory=lambda: [1, 2])
    spatial_stride: int = 2
    separable: bool = False
    dropout: float = 0.1

    @classmethod
    def from_dict(cls, values: dict) -> "BackboneConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown backbone setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: (list(v) if isinstance(v, (list, tuple)) or hasattr(v, "__iter__") and not isinstance(v, str) else v)
                      for k, v in values.items()})

    def validate(self) -> None:
        checks = {
            "embed_dim": self.embed_dim >= 1,
            "widths": len(self.widths) >= 1 and all(w >= 1 for w in self.widths),
            "blocks_per_stage": self.blocks_per_stage >= 1,
            "spatial_kernels": all(k >= 1 and k % 2 == 1 for k in self.spatial_kernels),
            "temporal_kernel": self.temporal_kernel >= 1,
            "temporal_dilations": all(d >= 1 for d in self.temporal_dilations),
            "spatial_stride": self.spatial_stride >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid backbone setting(s) {bad}: widths/dims >= 1, odd spatial kernels, "
                             f"0 <= dropout < 1 (got {asdict(self)})")


class MultiScaleSTResNet(nn.Module):
    def __init__(self, num_features: int, num_classes: int, config: BackboneConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.num_features, self.num_classes = num_features, num_classes
        self.stem = nn.Sequential(nn.Linear(num_features, config.embed_dim), nn.LayerNorm(config.embed_dim), nn.GELU())
        stages, in_ch = [], 1
        for stage_idx, width in enumerate(config.widths):
            blocks = []
            for block_idx in range(config.blocks_per_stage):
                stride = config.spatial_stride if block_idx == 0 and stage_idx > 0 else 1
                blocks.append(MultiScaleResidualBlock(
                    in_ch, width, config.spatial_kernels, config.temporal_kernel, config.temporal_dilations,
                    stride, config.separable, config.dropout))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * in_ch, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled representation [batch, 2 * last width] of windows x [batch, window, features]."""
        h = self.stem(x).unsqueeze(1)  # [B, 1, W, E]
        for stage in self.stages:
            h = stage(h)
        newest = h[:, :, -1, :].mean(dim=-1)
        context = h.mean(dim=(2, 3))
        return torch.cat([newest, context], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.num_features:
            raise ValueError(f"expected windows [batch, window, {self.num_features}], got {tuple(x.shape)}")
        return self.head(self.features(x))


def build_backbone(num_features: int, num_classes: int, **config) -> MultiScaleSTResNet:
    """Build from plain values (a Hydra config's `model.backbone` section)."""
    return MultiScaleSTResNet(num_features, num_classes, BackboneConfig.from_dict(config))


def model_cost(model: nn.Module, window: int) -> dict[str, int]:
    """Parameters and multiply-accumulates for one window (torch's own FLOP counter: MACs = FLOPs / 2)."""
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    x = torch.zeros(1, window, model.num_features)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return {"params": int(params), "macs": int(counter.get_total_flops() // 2)}
