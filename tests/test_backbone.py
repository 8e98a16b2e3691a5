import pytest
import torch

from mstr.models import BackboneConfig, build_backbone, model_cost
from mstr.models.blocks import MultiScaleResidualBlock


def _cfg(name):
    from omegaconf import OmegaConf

    from mstr.config import compose_config

    return OmegaConf.to_container(compose_config("train", [f"model={name}"]).model.backbone)


@pytest.mark.parametrize("window", [1, 8])
@pytest.mark.parametrize("name", ["teacher", "student"])
def test_default_models_map_windows_to_logits(name, window):
    model = build_backbone(26, 3, **_cfg(name))
    out = model(torch.randn(5, window, 26))
    assert out.shape == (5, 3)
    assert torch.isfinite(out).all()


def test_teacher_is_a_few_hundred_thousand_params_and_student_20x_smaller():
    teacher = model_cost(build_backbone(26, 2, **_cfg("teacher")), window=8)
    student = model_cost(build_backbone(26, 2, **_cfg("student")), window=8)
    assert 150_000 <= teacher["params"] <= 900_000
    assert teacher["params"] >= 20 * student["params"]
    assert teacher["macs"] > 20 * student["macs"] > 0


def test_param_count_matches_torch_and_macs_scale_with_window():
    model = build_backbone(10, 2, embed_dim=8, widths=[4, 8])
    assert model_cost(model, 4)["params"] == sum(p.numel() for p in model.parameters())
    assert model_cost(model, 8)["macs"] > model_cost(model, 4)["macs"]


def test_block_is_causal_in_time():
    """Changing later flows of a window never changes outputs at earlier time positions."""
    torch.manual_seed(0)
    block = MultiScaleResidualBlock(3, 8, spatial_kernels=(1, 3), temporal_dilations=(1, 2)).eval()
    x = torch.randn(2, 3, 6, 10)
    y = x.clone()
    y[:, :, 4:] += torch.randn_like(y[:, :, 4:])
    assert torch.allclose(block(x)[:, :, :4], block(y)[:, :, :4], atol=1e-6)
    assert not torch.allclose(block(x)[:, :, 4:], block(y)[:, :, 4:])


def test_residual_path_projects_only_when_shape_changes():
    same = MultiScaleResidualBlock(8, 8)
    wider = MultiScaleResidualBlock(8, 16)
    strided = MultiScaleResidualBlock(8, 8, stride_space=2)
    assert isinstance(same.residual, torch.nn.Identity)
    assert not isinstance(wider.residual, torch.nn.Identity)
    assert strided(torch.randn(1, 8, 4, 10)).shape == (1, 8, 4, 5)


def test_separable_variant_has_fewer_params_same_shape():
    dense = build_backbone(20, 2, widths=[16, 32], separable=False)
    sep = build_backbone(20, 2, widths=[16, 32], separable=True)
    assert sum(p.numel() for p in sep.parameters()) < sum(p.numel() for p in dense.parameters())
    assert sep(torch.randn(2, 4, 20)).shape == (2, 2)


def test_bad_settings_and_inputs_fail_clearly():
    with pytest.raises(ValueError, match="unknown backbone setting"):
        BackboneConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="spatial_kernels"):
        build_backbone(4, 2, spatial_kernels=[2])
    with pytest.raises(ValueError, match="expected windows"):
        build_backbone(4, 2)(torch.randn(2, 4, 5))
