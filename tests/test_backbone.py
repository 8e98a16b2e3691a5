import pytest
import torch
import torch.nn.functional as F

from mstr.models import BackboneConfig, build_backbone, model_cost
from mstr.models.blocks import AxisMultiScaleConv, MultiScaleResidualBlock, RowConv, feature_offsets, time_offsets
from mstr.models.tokenizer import FeatureLayout, FeatureTokenizer

# 3 numeric columns (the second with 2 bins) and one categorical column of 3 values, interleaved
LAYOUT = {"tokens": [[0], [5, 6, 7, 8], [1, 3, 4], [2]], "names": ["a", "proto", "b", "c"]}


def _cfg(name):
    from omegaconf import OmegaConf

    from mstr.config import compose_config

    return OmegaConf.to_container(compose_config("train", [f"model={name}"]).model.backbone)


@pytest.mark.parametrize("window", [1, 8])
@pytest.mark.parametrize("name", ["teacher", "student"])
def test_default_models_map_windows_to_logits(name, window):
    model = build_backbone(9, 3, window=window, layout=LAYOUT, **_cfg(name))
    out = model(torch.randn(5, window, 9))
    assert out.shape == (5, 3)
    assert torch.isfinite(out).all()


def test_teacher_is_large_and_the_student_under_5k_and_20x_smaller():
    # NSL-KDD's shape: 41 columns, 125 flat features
    layout = {"tokens": [[i] for i in range(38)] + [list(range(38, 41)), list(range(41, 112)),
                                                    list(range(112, 125))], "names": [str(i) for i in range(41)]}
    teacher = model_cost(build_backbone(125, 2, layout=layout, **_cfg("teacher")), window=1)
    student = model_cost(build_backbone(125, 2, layout=layout, **_cfg("student")), window=1)
    assert 100_000 <= teacher["params"] <= 900_000
    assert student["params"] <= 5_000
    assert teacher["params"] >= 20 * student["params"]
    assert teacher["macs"] > 20 * student["macs"] > 0


def test_tokenizer_is_a_per_column_embedding():
    """Each column's token is its own positions' values times their weights, plus the column's bias:
    a numeric value scales its vector, a one-hot picks its category's row."""
    layout = FeatureLayout.from_dict(LAYOUT, 9)
    tok = FeatureTokenizer(layout, dim=3)
    with torch.no_grad():
        tok.bias.normal_()
    x = torch.randn(2, 4, 9)
    out = tok(x)
    assert out.shape == (2, 3, 4, 4)  # [batch, dim, time, columns]
    w = dict(zip([p for t in LAYOUT["tokens"] for p in t], tok.weight))
    for k, positions in enumerate(LAYOUT["tokens"]):
        expected = sum(x[..., p, None] * w[p] for p in positions) + tok.bias[k]
        assert torch.allclose(out[:, :, :, k], expected.permute(0, 2, 1), atol=1e-5)


def test_layout_must_cover_every_input_once():
    with pytest.raises(ValueError, match="exactly once"):
        FeatureLayout.from_dict({"tokens": [[0], [0, 1]], "names": ["a", "b"]}, 2)
    with pytest.raises(ValueError, match="exactly once"):
        FeatureLayout.from_dict({"tokens": [[0]], "names": ["a"]}, 2)


@pytest.mark.parametrize("axis, offsets", [("features", feature_offsets([1, 3, 5])),
                                           ("features", [[0], [-2, -1, 0, 1]]),  # one-sided: explicit padding
                                           ("time", time_offsets(3, [1, 2]))])
def test_assembled_kernel_equals_separate_branch_convolutions(axis, offsets):
    torch.manual_seed(0)
    conv = AxisMultiScaleConv(3, 2, offsets, axis)
    x = torch.randn(2, 3, 6, 7)
    separate = []
    for w, taps in zip(conv.branch_weights, offsets):
        before, after = -min(taps), max(taps)
        span = after + before + 1
        kernel = torch.zeros(2, 3, span)
        kernel[:, :, [t + before for t in taps]] = w.detach()
        if axis == "time":
            separate.append(F.conv2d(F.pad(x, (0, 0, before, after)), kernel.unsqueeze(-1)))
        else:
            separate.append(F.conv2d(F.pad(x, (before, after, 0, 0)), kernel.unsqueeze(-2)))
    assert torch.allclose(conv(x), torch.cat(separate, dim=1), atol=1e-5)
    assert sum(p.numel() for p in conv.parameters()) == 2 * 3 * sum(len(t) for t in offsets)


def test_block_is_causal_in_time():
    """Changing later flows of a window never changes outputs at earlier time positions."""
    torch.manual_seed(0)
    block = MultiScaleResidualBlock(3, 8, feature_kernels=[1, 3], time_dilations=[1, 2]).eval()
    x = torch.randn(2, 3, 6, 10)
    y = x.clone()
    y[:, :, 4:] += torch.randn_like(y[:, :, 4:])
    assert torch.allclose(block(x)[:, :, :4], block(y)[:, :, :4], atol=1e-6)
    assert not torch.allclose(block(x)[:, :, 4:], block(y)[:, :, 4:])


@pytest.mark.parametrize("training", [True, False])
def test_block_result_does_not_depend_on_the_maps_memory_layout(training):
    """The CPU training path normalises a contiguous copy of the branches (batch norm's fast layout)
    while the convolutions run channels-last: same outputs, same gradients, either input layout."""
    torch.manual_seed(0)
    block = MultiScaleResidualBlock(4, 8, feature_kernels=[1, 3, 5], time_dilations=[1]).train(training)
    x = torch.randn(32, 4, 3, 11)
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        block.zero_grad()
        xi = x.clone().contiguous(memory_format=layout).requires_grad_()
        out = block(xi)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), xi.grad, block.norm.weight.grad.clone(), block.fuse.weight.grad.clone()))
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-5)
    if training:
        assert results[0][2].abs().sum() > 0  # the norm learned from this batch


def test_no_temporal_weights_at_window_1_and_the_window_is_used_above_it():
    flat = build_backbone(9, 2, window=1, layout=LAYOUT)
    windowed = build_backbone(9, 2, window=8, layout=LAYOUT)
    axes = lambda m: {c.axis for block in m.modules() if isinstance(block, MultiScaleResidualBlock) for c in block.convs}
    assert axes(flat) == {"features"}
    assert axes(windowed) == {"features", "time"}
    windowed.eval()
    x = torch.randn(4, 8, 9)
    y = x.clone()
    y[:, 0] += 1.0  # only the oldest flow changes
    assert not torch.allclose(windowed(x), windowed(y))


def test_row_branch_lets_far_apart_columns_meet_in_the_first_stage_only():
    """Without it a pointwise block's output at the first column ignores the last column; with it that
    column reaches every position through one whole-row kernel (first stage only: after its fuse every
    column carries the summary)."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, 2, 10)
    y = x.clone()
    y[..., -1] += 1.0  # only the last column changes
    for row in (0, 10):
        block = MultiScaleResidualBlock(4, 8, feature_kernels=[1], temporal=False, row_columns=row).eval()
        assert torch.allclose(block(x)[..., :-1], block(y)[..., :-1], atol=1e-6) == (row == 0)
    # Inference fuses the row's channels at one position and broadcasts them: the same numbers as
    # normalising and fusing the concatenated map.
    with torch.no_grad():
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 2.0)
        block.norm.weight.normal_()
        block.norm.bias.normal_()
        concatenated = torch.cat([conv(x) for conv in block.convs], dim=1)
        expected = F.relu(block.fuse(F.relu(block.norm(concatenated))) + block.residual(x))
        assert torch.allclose(block(x), expected, atol=1e-5)
    row_only = MultiScaleResidualBlock(4, 8, feature_kernels=[], temporal=False, row_columns=10).eval()
    assert row_only(x).shape == (3, 8, 2, 10)
    model = build_backbone(9, 2, layout=LAYOUT, widths=[8, 8], row_branch=True)
    rows = [[c for c in block.convs if isinstance(c, RowConv)] for block in model.modules()
            if isinstance(block, MultiScaleResidualBlock)]
    assert [len(r) for r in rows] == [1, 0]
    assert rows[0][0].conv.kernel_size == (1, 4)  # LAYOUT's 4 columns
    assert model(torch.randn(2, 1, 9)).shape == (2, 2)


def test_readout_is_the_newest_flow_only_once():
    model = build_backbone(9, 2, window=4, layout=LAYOUT, widths=[6]).eval()
    assert model.head[-1].in_features == 6 * 4  # channels x columns, no second (duplicated) half
    pooled = build_backbone(9, 2, window=4, layout=LAYOUT, widths=[6], readout="pool")
    assert pooled.head[-1].in_features == 6


def test_readout_channels_shrink_the_head_and_keep_columns_apart():
    wide = build_backbone(9, 15, layout=LAYOUT, widths=[8])
    narrow = build_backbone(9, 15, layout=LAYOUT, widths=[8], readout_channels=2)
    assert wide.head[-1].in_features == 8 * 4 and narrow.head[-1].in_features == 2 * 4
    assert narrow(torch.randn(3, 1, 9)).shape == (3, 15)


def test_linear_stem_ablation_and_residual_switch():
    linear = build_backbone(9, 2, stem="linear", token_dim=16)
    assert linear(torch.randn(3, 1, 9)).shape == (3, 2)
    plain = build_backbone(9, 2, layout=LAYOUT, residual=False)
    assert all(b.residual is None for b in plain.modules() if isinstance(b, MultiScaleResidualBlock))


def test_hook_points_name_stages_with_their_channels():
    model = build_backbone(9, 2, layout=LAYOUT, token_dim=4, widths=[6, 12])
    assert model.hook_points() == {"stages.0": 6, "stages.1": 12}
    for name, channels in model.hook_points().items():
        assert model.get_submodule(name)[-1].out_channels == channels


def test_param_count_matches_torch_and_macs_scale_with_window():
    model = build_backbone(9, 2, window=8, layout=LAYOUT, widths=[4, 8])
    assert model_cost(model, 4)["params"] == sum(p.numel() for p in model.parameters())
    assert model_cost(model, 8)["macs"] > model_cost(model, 4)["macs"]


def test_bad_settings_and_inputs_fail_clearly():
    with pytest.raises(ValueError, match="unknown backbone setting"):
        BackboneConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="feature_kernels"):
        build_backbone(4, 2, feature_kernels=[2])
    with pytest.raises(ValueError, match="stem"):
        build_backbone(4, 2, stem="conv")
    with pytest.raises(ValueError, match="expected windows"):
        build_backbone(4, 2)(torch.randn(2, 4, 5))


@pytest.mark.parametrize("changes", [{}, {"row_branch": True}, {"readout": "pool"}, {"readout_channels": 2},
                                     {"head_hidden": 5}, {"row_branch": True, "blocks_per_stage": 2}])
def test_batch_last_layout_scores_windows_of_one_flow_like_the_model(changes):
    """Export's batch-last form ([1, channels, columns, batch]) gives the model's logits for every
    backbone option, and is refused where it does not apply."""
    from mstr.models.batch_last import BatchLastWindowOne

    for name in ("student", "teacher"):
        model = build_backbone(9, 3, window=1, layout=LAYOUT, **{**_cfg(name), **changes}).eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.normal_()
                    module.running_var.uniform_(0.5, 2.0)
            x = torch.randn(33, 1, 9)
            torch.testing.assert_close(BatchLastWindowOne(model)(x), model(x), atol=1e-5, rtol=1e-4)
    row_only = MultiScaleResidualBlock(4, 6, [], temporal=False, row_columns=5).eval()
    maps = torch.randn(7, 4, 1, 5)
    with torch.no_grad():
        torch.testing.assert_close(row_only(maps.permute(2, 1, 3, 0), batch_last=True),
                                   row_only(maps).permute(2, 1, 3, 0), atol=1e-5, rtol=1e-4)
    for refused in (build_backbone(9, 3, window=4, layout=LAYOUT), build_backbone(9, 3, stem="linear")):
        assert not BatchLastWindowOne.applies(refused)
        with pytest.raises(ValueError, match="batch-last"):
            BatchLastWindowOne(refused)


@pytest.mark.parametrize("changes", [{}, {"row_branch": True}, {"readout": "pool"}, {"readout_channels": 2},
                                     {"head_hidden": 5}, {"row_branch": True, "blocks_per_stage": 2},
                                     {"widths": [4, 4, 4]}, {"stem": "linear"}, {"time_dilations": [1]}])
@pytest.mark.parametrize("window", [2, 8, 16])
def test_newest_flow_form_scores_windows_of_several_flows_like_the_model(changes, window):
    """Export's form for windows of several flows computes each block only at the flows read downstream:
    the last at the newest flow, its time taps cropped where they would read before the window, the one
    before at every third flow (dilations 3 and 6), and at 16 flows the stem skips the oldest flow; the
    model's logits for every backbone option, refused at window 1."""
    from mstr.models.blocks import FlowSelection
    from mstr.models.newest_flow import NewestFlowOnly, flow_plan

    default = build_backbone(9, 3, window=8, layout=LAYOUT, **_cfg("student"))
    assert flow_plan([block for stage in default.stages for block in stage], 8) == (
        (0, 1), [FlowSelection(step=1, first=1, stride=3, count=3), FlowSelection(step=3, first=2, stride=1, count=1)])

    for name in ("student", "teacher"):
        model = build_backbone(9, 3, window=window, layout=LAYOUT, **{**_cfg(name), **changes}).eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.normal_()
                    module.running_var.uniform_(0.5, 2.0)
            x = torch.randn(33, window, 9)
            torch.testing.assert_close(NewestFlowOnly(model)(x), model(x), atol=1e-5, rtol=1e-4)
    refused = build_backbone(9, 3, window=1, layout=LAYOUT)
    assert not NewestFlowOnly.applies(refused)
    with pytest.raises(ValueError, match="several flows"):
        NewestFlowOnly(refused)


def test_token_runs_are_the_cheapest_cut_of_the_feature_axis():
    """The runs cover every token once, in order, and no other cut into consecutive runs costs less."""
    import itertools
    import random

    from mstr.models.tokenizer import token_runs

    def cost(runs, sizes, dim, run_cost):
        return sum(dim * (end - first) * sum(sizes[first:end]) + run_cost for first, end in runs)

    rng = random.Random(0)
    for _ in range(30):
        sizes = [rng.choice([1, 1, 1, 2, 5, 9, 30]) for _ in range(rng.randint(1, 9))]
        dim, run_cost = rng.choice([2, 4, 8]), rng.choice([0, 50, 500, 5000])
        runs = token_runs(sizes, dim, run_cost)
        assert [first for first, _ in runs] == [0] + [end for _, end in runs[:-1]] and runs[-1][1] == len(sizes)
        cheapest = min(
            cost(list(zip((0, *cuts), (*cuts, len(sizes)))), sizes, dim, run_cost)
            for k in range(len(sizes)) for cuts in itertools.combinations(range(1, len(sizes)), k))
        assert cost(runs, sizes, dim, run_cost) == cheapest
    assert token_runs([3, 3, 3], 4, run_cost=10**9) == [(0, 3)]
    assert token_runs([3, 3, 3], 4, run_cost=0) == [(0, 1), (1, 2), (2, 3)]


def test_exported_tokenizer_multiplies_each_run_of_tokens_by_its_own_inputs_only(tmp_path):
    """A layout with a wide one-hot block and many one-input columns is exported as several small
    products (one per run, each gathering its own input rows), not one dense matrix mostly of zeros;
    the scores are the PyTorch model's, which keeps the one dense product."""
    import numpy as np
    import onnx

    from mstr.deploy.runtime import onnx_session
    from mstr.models.tokenizer import token_runs
    from mstr.training.export import export_model

    # 60 inputs laid out as the preprocessing lays them: 30 scaled values, a 24-wide one-hot block, then
    # two bins each for columns 12-14; on the feature axis the one-hot column stands after column 11
    tokens = ([[k] for k in range(12)] + [list(range(30, 54))]
              + [[k, 54 + 2 * (k - 12), 55 + 2 * (k - 12)] for k in range(12, 15)] + [[k] for k in range(15, 30)])
    layout = {"tokens": tokens, "names": [f"c{k}" for k in range(len(tokens))]}
    flat = sorted(p for t in tokens for p in t)
    assert flat == list(range(len(flat))), "the layout must cover its inputs once"
    num_inputs = len(flat)
    model = build_backbone(num_inputs, 2, window=1, layout=layout, **_cfg("student")).eval()
    with torch.no_grad():
        model.stem.bias.normal_()
    runs = token_runs([len(t) for t in tokens], model.stem.dim)
    assert len(runs) > 1
    path = tmp_path / "model.onnx"
    export_model(model, "onnx", torch.randn(2, 1, num_inputs), path)
    x = torch.randn(64, 1, num_inputs)
    session = onnx_session(path, threads=1, optimized_path=tmp_path / "optimised.onnx")
    exported = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(exported, expected, atol=1e-5, rtol=1e-4)
    nodes = onnx.load(str(tmp_path / "optimised.onnx")).graph.node
    gathers = [node for node in nodes if node.op_type == "Gather"]
    assert len(gathers) == len(runs), [node.op_type for node in nodes]


@pytest.mark.parametrize("window, row_branch", [(1, False), (4, False), (1, True), (4, True)])
def test_onnx_export_scores_like_pytorch(tmp_path, window, row_branch):
    """The exported graph computes the token map channels-first and reads the newest flow by reshape at
    window 1, so ONNX Runtime's optimised graph has no Transpose, Slice or Gather on the activations
    there (they took ~45% of an NSL-KDD student's time): the same numbers as the PyTorch model."""
    import numpy as np
    import onnx

    from mstr.deploy.runtime import onnx_session
    from mstr.training.export import export_model

    model = build_backbone(9, 3, window=window, layout=LAYOUT, **{**_cfg("student"), "row_branch": row_branch}).eval()
    with torch.no_grad():  # batch norm with non-trivial statistics, so a misplaced channel would show
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
        model.stem.bias.normal_()
    path = tmp_path / "model.onnx"
    export_model(model, "onnx", torch.randn(2, window, 9), path)
    x = torch.randn(64, window, 9)
    session = onnx_session(path, threads=1)
    exported = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(exported, expected, atol=1e-5, rtol=1e-4)
    # what ONNX Runtime runs: each residual Add and its ReLU fused into a convolution (the export names
    # the batch axis so that it can prove the shapes match), the causal padding folded into the time
    # convolutions, and at window 1, once it has folded the weights' own reshaping, no Transpose, Slice
    # or Gather
    onnx_session(path, threads=1, optimized_path=tmp_path / "optimised.onnx")
    nodes = onnx.load(str(tmp_path / "optimised.onnx")).graph.node
    ops = {node.op_type for node in nodes}
    with_residual = [node for node in nodes if node.op_type == "FusedConv" and len(node.input) == 4]  # X, W, B, sum
    assert len(with_residual) == sum(len(stage) for stage in model.stages), sorted(ops)
    assert "Pad" not in ops, sorted(ops)
    if window == 1:
        assert not ops & {"Transpose", "Slice", "Gather"}, sorted(ops)
