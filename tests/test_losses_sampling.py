import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mstr.data.sampling import class_weights, make_sampler
from mstr.errors import ConfigError
from mstr.training.losses import FocalLoss, build_task_loss, kd_logit_loss


def test_kd_is_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(16, 3)
    assert kd_logit_loss(logits, logits.clone(), 4.0).abs() < 1e-6
    assert kd_logit_loss(logits, torch.randn(16, 3), 4.0) > 0


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
def test_kd_is_t_squared_times_kl_of_softened_distributions(temperature):
    torch.manual_seed(1)
    s, t = torch.randn(32, 5), torch.randn(32, 5)
    p_t = F.softmax(t / temperature, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / temperature, -1))).sum(-1).mean()
    assert torch.allclose(kd_logit_loss(s, t, temperature), temperature**2 * kl, atol=1e-5)


def test_distillation_loss_mixes_the_task_loss_and_the_kd_term_by_alpha(small_synthetic_dm):
    from mstr.models import build_backbone
    from mstr.training.distill import DistillationModule

    dm = small_synthetic_dm
    teacher = build_backbone(dm.num_features, 2, window=dm.window, token_dim=4, widths=[8])
    common = dict(num_features=dm.num_features, num_classes=2, backbone={"token_dim": 2, "widths": [4], "window": dm.window},
                  optim={"lr": 1e-3, "weight_decay": 0.0}, loss={"name": "ce"})
    x, y = dm.dataset("train").__getitems__(list(range(64)))
    torch.manual_seed(0)
    for alpha in (0.0, 0.25, 1.0):  # (1 - alpha) * CE + alpha * KD: the ends and a mix
        module = DistillationModule(teacher=teacher, distill={"method": "logits", "temperature": 3.0, "alpha": alpha},
                                    **common)
        module.log = lambda *a, **k: None
        module.eval()  # deterministic forward for the comparison
        loss, logits = module.training_loss(x, y)
        expected = (1 - alpha) * F.cross_entropy(logits, y) + alpha * kd_logit_loss(logits, teacher.eval()(x), 3.0)
        assert torch.allclose(loss, expected, atol=1e-6)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    assert not any(k.startswith("_teacher") or "teacher" in k for k in module.state_dict())


@pytest.mark.parametrize("total", [1, 3, 4, 5, 10, 20, 21, 200])
def test_the_learning_rate_schedule_runs_any_number_of_steps(total):
    """One-cycle warm-up is at least 2 steps (at 10 steps 10% is one: OneCycleLR divided 0 by 0), and a
    run of fewer than 4 steps keeps a constant rate; the rate peaks at optim.lr and stays finite."""
    from types import SimpleNamespace

    from mstr.training.module import MIN_SCHEDULED_STEPS, FlowClassifier

    module = FlowClassifier(num_features=6, num_classes=2, backbone={"token_dim": 2, "widths": [4]},
                            optim={"lr": 0.01, "weight_decay": 0.0, "warmup_fraction": 0.1}, loss={"name": "ce"})
    module._trainer = SimpleNamespace(estimated_stepping_batches=total)
    out = module.configure_optimizers()
    if total < MIN_SCHEDULED_STEPS:
        assert isinstance(out, torch.optim.Optimizer)
        return
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(total):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(np.isfinite(rates)) and 0.0098 < max(rates) <= 0.01
    assert rates[0] < 0.01 and rates[-1] < 0.01 * 0.01  # warms up from low, anneals to near zero


def test_focal_with_gamma_zero_is_cross_entropy_and_downweights_easy_examples():
    logits, target = torch.randn(20, 3), torch.randint(0, 3, (20,))
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target), atol=1e-6)
    easy = torch.tensor([[2.0, 0.0]])
    assert FocalLoss(gamma=2.0)(easy, torch.tensor([0])) < 0.1 * F.cross_entropy(easy, torch.tensor([0]))
    with pytest.raises(ConfigError, match="loss.name"):
        build_task_loss("hinge")


def test_class_weights_are_inverse_frequency_normalised():
    labels = np.array([0] * 90 + [1] * 10)
    w = class_weights(labels, 2, "balanced")
    assert w[1] / w[0] == pytest.approx(9.0) and float(w.mean()) == pytest.approx(1.0)
    assert class_weights(labels, 2, "sqrt")[1] / class_weights(labels, 2, "sqrt")[0] == pytest.approx(3.0)
    assert class_weights(labels, 2, "none") is None


@pytest.mark.parametrize("mode, expected_minority_share", [("weighted", 0.5), ("sqrt", 0.25), ("none", None)])
def test_sampler_rebalances_classes(mode, expected_minority_share):
    labels = np.array([0] * 900 + [1] * 100)
    sampler = make_sampler(labels, 2, mode, seed=0)
    if expected_minority_share is None:
        assert sampler is None
        return
    drawn = labels[np.array([i for _ in range(20) for i in sampler])]
    # sqrt: weights 1/sqrt(n) -> shares sqrt(100) : sqrt(900) = 1 : 3
    assert drawn.mean() == pytest.approx(expected_minority_share, abs=0.02)
