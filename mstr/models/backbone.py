"""The one backbone builder: a config -> `MultiScaleSTResNet`, teacher and student alike.

    [batch, window, flat features]
      -> stem: one embedding per real column (`FeatureTokenizer`), map [batch, token_dim, window, columns]
         (ablation: `stem: linear`, a learned bottleneck of `token_dim` unordered coordinates)
      -> stages of MultiScaleResidualBlocks: feature-axis branches, and causal time branches when
         the window holds more than one flow (dilations growing with depth, see `stage_dilations`)
      -> readout of the newest flow's position (causal time branches gave it the window's context):
         flattened over columns (each column keeps its identity) or pooled
      -> classifier head -> logits [batch, num_classes]

Teacher and student differ only in `BackboneConfig` values. The model declares its hook points
(`hook_points`: named stages and their channel counts) so distillation never reaches into a block.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mstr.models.blocks import MultiScaleResidualBlock
from mstr.models.tokenizer import FeatureLayout, FeatureTokenizer, LinearStem

STEMS = ("tokens", "linear")
READOUTS = ("flatten", "pool")


@dataclass
class BackboneConfig:
    stem: str = "tokens"            # tokens: one embedding per column | linear: learned bottleneck (ablation)
    token_dim: int = 8              # channels of each column's embedding (linear stem: its width)
    widths: list[int] = field(default_factory=lambda: [8, 16])
    blocks_per_stage: int = 1
    feature_kernels: list[int] = field(default_factory=lambda: [1, 3, 5])
    row_branch: bool = False        # the first stage gets a branch whose kernel spans all columns (RowConv)
    time_kernel: int = 3
    time_dilations: list[int] = field(default_factory=lambda: [1, 2])
    residual: bool = True
    readout: str = "flatten"        # flatten: columns keep their identity | pool: mean over columns
    readout_channels: int = 0       # > 0: a 1x1 projection to this many channels per column before flattening
    head_hidden: int = 0            # > 0: one hidden layer in the head
    dropout: float = 0.0

    @classmethod
    def from_dict(cls, values: dict) -> "BackboneConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown backbone setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()})

    def validate(self) -> None:
        def whole(v, minimum: int) -> bool:  # 8.5 channels built a traceback; true is no count either
            return isinstance(v, int) and not isinstance(v, bool) and v >= minimum

        rules = {  # setting -> (test, what it must be)
            "stem": (lambda v: v in STEMS, f"one of {list(STEMS)}"),
            "token_dim": (lambda v: whole(v, 1), "an integer >= 1"),
            "widths": (lambda v: len(v) >= 1 and all(whole(w, 1) for w in v), "a non-empty list of integers >= 1"),
            "blocks_per_stage": (lambda v: whole(v, 1), "an integer >= 1"),
            "feature_kernels": (lambda v: all(whole(k, 1) and k % 2 == 1 for k in v), "a list of odd integers >= 1"),
            "time_kernel": (lambda v: whole(v, 1), "an integer >= 1"),
            "time_dilations": (lambda v: all(whole(d, 1) for d in v), "a list of integers >= 1"),
            "readout": (lambda v: v in READOUTS, f"one of {list(READOUTS)}"),
            "head_hidden": (lambda v: whole(v, 0), "an integer >= 0"),
            "readout_channels": (lambda v: whole(v, 0), "an integer >= 0"),
            "dropout": (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
            "row_branch": (lambda v: isinstance(v, bool), "true or false"),
            "residual": (lambda v: isinstance(v, bool), "true or false"),
        }
        bad = []
        for name, (ok, expected) in rules.items():
            value = getattr(self, name)
            try:
                passed = ok(value)
            except TypeError:  # a list where a number belongs, text where a list belongs, ...
                passed = False
            if not passed:
                bad.append(f"{name}={value!r} (must be {expected})")
        if bad:
            raise ValueError(f"invalid backbone setting(s): {'; '.join(bad)}")

    def check_window(self, window: int) -> None:
        """Every block needs a branch: without feature kernels a stage has only the time dilations that
        fit the window (none at window 1), and the row branch of the first block."""
        if self.feature_kernels:
            return
        for stage in range(len(self.widths)):
            row_only = self.row_branch and stage == 0 and self.blocks_per_stage == 1
            if not stage_dilations(self, stage, window) and not row_only:
                raise ValueError(f"feature_kernels=[]: stage {stage + 1} has no time dilation inside a window of "
                                 f"{window} flow(s), so its blocks would have no branch; give a feature kernel "
                                 "(e.g. feature_kernels=[3])")


class MultiScaleSTResNet(nn.Module):
    def __init__(self, num_features: int, num_classes: int, config: BackboneConfig, window: int = 1,
                 layout: Optional[FeatureLayout] = None):
        super().__init__()
        config.validate()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        config.check_window(window)
        self.config, self.window = config, window
        self.num_features, self.num_classes = num_features, num_classes
        layout = layout or FeatureLayout.identity(num_features)
        self.layout = layout
        if config.stem == "tokens":
            self.stem: nn.Module = FeatureTokenizer(layout, config.token_dim)
            in_ch, positions = config.token_dim, layout.num_tokens
        else:
            self.stem = LinearStem(num_features, config.token_dim)
            in_ch, positions = 1, config.token_dim
        stages = []
        for stage, width in enumerate(config.widths):
            dilations = stage_dilations(config, stage, window)
            blocks = []
            for _ in range(config.blocks_per_stage):
                # One whole-row branch is enough: after the first fuse every column carries the summary.
                row_columns = positions if config.row_branch and stage == 0 and not blocks else 0
                blocks.append(MultiScaleResidualBlock(in_ch, width, config.feature_kernels, config.time_kernel,
                                                      dilations, bool(dilations), config.residual, config.dropout,
                                                      row_columns))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        # With many classes a flattened head grows as channels x columns x classes; a 1x1 projection
        # keeps a few channels per column first (every column still has its own weights in the head).
        self.squeeze = nn.Conv2d(in_ch, config.readout_channels, 1) if config.readout_channels else nn.Identity()
        in_ch = config.readout_channels or in_ch
        readout = in_ch * positions if config.readout == "flatten" else in_ch
        if config.head_hidden:
            self.head = nn.Sequential(nn.Linear(readout, config.head_hidden), nn.GELU(),
                                      nn.Dropout(config.dropout), nn.Linear(config.head_hidden, num_classes))
        else:
            self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(readout, num_classes))

    def hook_points(self) -> dict[str, int]:
        """Where distillation may collect maps `[batch, channels, time, features]`, shallow to deep,
        with their channel counts: the output of every stage."""
        return {f"stages.{i}": stage[-1].out_channels for i, stage in enumerate(self.stages)}

    def column_index(self) -> torch.Tensor:
        """[num_features]: the column (token) each flat input feature belongs to."""
        column = torch.empty(self.num_features, dtype=torch.long)
        for k, positions in enumerate(self.layout.tokens):
            column[positions] = k
        return column

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The readout [batch, ...] of windows x [batch, window, features]: the newest flow's position."""
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.readout(h)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """The last block's map [batch, channels, time, features] -> the newest flow's readout."""
        if h.shape[2] > 1:
            h = h[:, :, -1:, :]
        newest = self.squeeze(h)  # [B, C, 1, features]; at window 1 no Slice or Gather in an exported graph
        return newest.flatten(1) if self.config.readout == "flatten" else newest.mean(dim=-1).flatten(1)

    def cost(self, window: int) -> dict[str, int]:
        return model_cost(self, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.num_features:
            raise ValueError(f"expected windows [batch, window, {self.num_features}], got {tuple(x.shape)}")
        return self.head(self.features(x))


def stage_dilations(config: BackboneConfig, stage: int, window: int) -> list[int]:
    """The time dilations of one stage: the configured ones times time_kernel**stage, so the receptive
    field grows geometrically with depth (as in WaveNet / TCNs) and reaches every earlier flow of the
    window, keeping only those whose taps land inside the window (a branch that could only read
    padding is cost, not context). Window 1: none at all."""
    if window <= 1 or config.time_kernel <= 1:
        return []
    scaled = [d * config.time_kernel ** stage for d in config.time_dilations]
    return [d for d in scaled if d <= window - 1]


def build_backbone(num_features: int, num_classes: int, window: int = 1, layout: Optional[dict] = None,
                   **config) -> MultiScaleSTResNet:
    """Build from plain values: a Hydra config's `model.backbone` section, plus the data's window and
    feature layout (both stored with the checkpoint's backbone settings, so it rebuilds the same)."""
    return MultiScaleSTResNet(num_features, num_classes, BackboneConfig.from_dict(config), window,
                              FeatureLayout.from_dict(layout, num_features))


def model_cost(model: nn.Module, window: int) -> dict[str, int]:
    """Parameters and multiply-accumulates for one window (torch's own FLOP counter: MACs = FLOPs / 2),
    counted on whatever device the model lives on."""
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, window, model.num_features, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return {"params": int(params), "macs": int(counter.get_total_flops() // 2)}
