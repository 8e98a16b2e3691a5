import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mstr.models import build_backbone
from mstr.training.distill import DistillationModule, method_weights
from mstr.training.hooks import FeatureCollector, match_stages
from mstr.training.losses import attention_loss, hint_loss, kd_logit_loss
from mstr.train import run

STUDENT = {"token_dim": 4, "widths": [4, 8]}
TEACHER = {"token_dim": 8, "widths": [8, 16, 32]}


def test_hooks_collect_each_stage_output_without_changing_the_forward():
    model = build_backbone(6, 2, window=5, **TEACHER).eval()
    x = torch.randn(3, 5, 6)
    plain = model(x)
    collector = FeatureCollector(model, list(model.hook_points()))
    assert torch.equal(model(x), plain)
    assert list(model.hook_points()) == ["stages.0", "stages.1", "stages.2"]
    h = model.stem(x)
    for name in collector.names:
        h = model.get_submodule(name)(h)
        assert torch.equal(collector[name], h)  # exactly that module's output
    collector.remove()
    with pytest.raises(ValueError, match="no module"):
        FeatureCollector(model, ["stages.9"])


def test_stages_are_matched_by_relative_depth_deepest_to_deepest():
    assert match_stages(["s0", "s1"], ["t0", "t1", "t2"]) == [("s0", "t1"), ("s1", "t2")]
    assert match_stages(["s0"], ["t0", "t1", "t2"]) == [("s0", "t2")]
    # a student deeper than twice the teacher: its first stages take the teacher's first, not (index -1) its last
    assert match_stages(["s0", "s1", "s2", "s3"], ["t0", "t1"]) == [("s0", "t0"), ("s1", "t0"), ("s2", "t1"),
                                                                     ("s3", "t1")]
    for s in range(1, 9):
        for t in range(1, 5):
            pairs = match_stages([f"s{k}" for k in range(s)], [f"t{k}" for k in range(t)])
            depths = [int(name[1:]) for _, name in pairs]
            assert depths == sorted(depths) and depths[-1] == t - 1


def test_hint_loss_is_zero_for_a_perfect_projection_and_positive_otherwise():
    teacher_map = torch.randn(2, 4, 3, 6)
    identity = nn.Conv2d(4, 4, 1, bias=False)
    identity.weight.data = torch.eye(4)[:, :, None, None]
    assert hint_loss(teacher_map.clone(), teacher_map, identity) < 1e-10
    assert hint_loss(torch.randn(2, 2, 3, 12), teacher_map, nn.Conv2d(2, 4, 1)) > 0  # other channels and size


def test_attention_loss_ignores_scale_and_sees_where_activations_are():
    t = torch.randn(2, 8, 4, 6)
    assert attention_loss(3.0 * t, t) < 1e-10  # normalised maps: only the distribution matters
    shifted = torch.roll(t, shifts=2, dims=2)
    assert attention_loss(shifted, t) > 1e-4
    assert attention_loss(torch.randn(2, 2, 4, 3), t) > 0  # fewer channels, smaller space: still comparable


@pytest.mark.parametrize("method, terms", [
    ("logits", {"alpha": 0.5, "features": 0.0, "attention": 0.0}),
    ("features", {"alpha": 0.0, "features": 1.0, "attention": 0.0}),
    ("attention", {"alpha": 0.0, "features": 0.0, "attention": 1.0}),
    ("combined", {"alpha": 0.5, "features": 1.0, "attention": 1.0}),
])
def test_each_method_switches_on_its_terms(method, terms):
    assert method_weights({"method": method, "alpha": 0.5, "feature_weight": 1.0, "attention_weight": 1.0}) == terms


def test_teacher_stays_frozen_in_eval_mode_while_the_student_and_projections_learn(small_synthetic_dm):
    dm = small_synthetic_dm
    teacher = build_backbone(dm.num_features, 2, window=dm.window, **TEACHER)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    module = DistillationModule(
        num_features=dm.num_features, num_classes=2, backbone={**STUDENT, "window": dm.window},
        optim={"lr": 1e-2, "weight_decay": 0.0},
        loss={"name": "ce"}, teacher=teacher,
        distill={"method": "combined", "temperature": 4.0, "alpha": 0.5, "feature_weight": 1.0,
                 "attention_weight": 1.0, "hint_warmup_fraction": 0.0})
    module.log = lambda *a, **k: None
    module.on_fit_start()  # registers the hooks, as Lightning does before the first step
    module.train()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.1)
    proj_before = module.hint_projections[0].weight.clone()
    x, y = dm.dataset("train").__getitems__(list(range(128)))
    loss, _ = module.training_loss(x, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # BN stats untouched too
    assert not torch.equal(proj_before, module.hint_projections[0].weight)
    assert not any("teacher" in k for k in module.state_dict())
    assert module.pairs == [("stages.0", "stages.1"), ("stages.1", "stages.2")]


@pytest.mark.parametrize("method", ["features", "attention", "combined"])
def test_every_method_trains_through_the_entry_point(compose_cfg, method):
    metrics = run(compose_cfg([f"distill={method}", "model=student", "debug=fast", "data.source.n_flows=3000",
                               "trainer.enable_progress_bar=false"]))
    assert {"test/f1", "teacher/test/f1", "compression/params_ratio"} <= metrics.keys()


def test_compression_report_compares_teacher_and_student():
    from mstr.training.compression import compression_report

    teacher = build_backbone(6, 2, **TEACHER)
    student = build_backbone(6, 2, **STUDENT)
    report = compression_report(teacher, student, 4, {"test/acc": 0.9, "test/f1": 0.8},
                                {"test/acc": 0.85, "test/f1": 0.82})
    assert report["compression/params_ratio"] == pytest.approx(
        sum(p.numel() for p in teacher.parameters()) / sum(p.numel() for p in student.parameters()))
    assert report["compression/teacher_weights_bytes"] > report["compression/student_weights_bytes"]
    assert report["compression/teacher_macs"] > report["compression/student_macs"]
    assert report["compression/student_latency_ms"] > 0 and report["compression/student_throughput_wps"] > 0
    assert report["compression/delta_acc"] == pytest.approx(-0.05)
    assert report["compression/delta_f1"] == pytest.approx(0.02)


def test_distilled_run_reports_compression_in_metrics(compose_cfg):
    metrics = run(compose_cfg(["model=student", "distill=logits", "debug=fast", "data.source.n_flows=3000",
                               "trainer.enable_progress_bar=false"]))
    assert metrics["compression/params_ratio"] >= 20
    assert metrics["compression/teacher_macs"] > metrics["compression/student_macs"]
    assert metrics["time/compression/student_latency_ms"] > 0
    assert "compression/delta_f1" in metrics


def test_hooks_are_removed_after_fitting(small_synthetic_dm):
    import pytorch_lightning as pl

    dm = small_synthetic_dm
    teacher = build_backbone(dm.num_features, 2, window=dm.window, **TEACHER)
    module = DistillationModule(
        num_features=dm.num_features, num_classes=2, backbone={**STUDENT, "window": dm.window},
        optim={"lr": 1e-2, "weight_decay": 0.0, "scheduler": "none"}, loss={"name": "ce"}, teacher=teacher,
        distill={"method": "combined", "temperature": 4.0, "alpha": 0.5, "feature_weight": 1.0,
                 "attention_weight": 1.0, "hint_warmup_fraction": 0.0})
    hooked = lambda: [n for m in (module.model, teacher) for n, sub in m.named_modules() if sub._forward_hooks]
    seen = []
    module.on_train_batch_start = lambda *a: seen.append(hooked())
    trainer = pl.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    assert seen and seen[0] == ["stages.0", "stages.1", "stages.1", "stages.2"]  # student's and teacher's stages
    assert hooked() == []


@pytest.mark.parametrize("augment", ["mixup", "swap"])
def test_augmented_windows_only_add_teacher_targets(small_synthetic_dm, augment):
    """KD on augmented windows: the task loss sees the labelled batch only, the KD term the batch plus
    as many synthetic windows; swap takes whole columns from other windows of the batch."""
    dm = small_synthetic_dm
    teacher = build_backbone(dm.num_features, 2, window=dm.window, **TEACHER).eval()
    module = DistillationModule(
        num_features=dm.num_features, num_classes=2, backbone={**STUDENT, "window": dm.window},
        optim={"lr": 1e-2, "weight_decay": 0.0}, loss={"name": "ce"}, teacher=teacher,
        distill={"method": "logits", "temperature": 2.0, "alpha": 0.5, "augment": augment, "augment_fraction": 0.5})
    module.log = lambda *a, **k: None
    x, y = dm.dataset("train").__getitems__(list(range(64)))
    torch.manual_seed(0)
    augmented = module._augmented(x)
    assert augmented.shape == (32, *x.shape[1:])
    if augment == "swap":
        # every value of an augmented window comes from the same position of some batch window
        assert all((x[:, :, j] == augmented[i, :, j]).all(dim=1).any()
                   for i in range(4) for j in range(x.shape[-1]))
    seen = []
    module.forward = lambda inputs: seen.append(len(inputs)) or module.model(inputs)
    module.eval()  # a deterministic forward for the comparison below
    module._augmented = lambda batch: augmented  # the windows drawn above
    loss, logits = module.training_loss(x, y)
    assert seen == [96] and logits.shape == (64, 2)
    both = torch.cat([x, augmented])  # the KD term over the batch and its synthetic windows, CE over the batch
    expected = 0.5 * F.cross_entropy(logits, y) + 0.5 * kd_logit_loss(module.model(both), teacher(both), 2.0)
    assert torch.allclose(loss, expected, atol=1e-6)


@pytest.mark.parametrize("method", ["features", "attention", "combined"])
def test_each_methods_terms_add_up_to_the_training_loss(small_synthetic_dm, method):
    """The objective is the task loss, the alpha-weighted logit term and the weighted mean over matched
    stages of each map term the method switches on, read from the maps the hooks collected."""
    dm = small_synthetic_dm
    teacher = build_backbone(dm.num_features, 2, window=dm.window, **TEACHER).eval()
    distill = {"method": method, "temperature": 2.0, "alpha": 0.3, "feature_weight": 0.7, "attention_weight": 2.0,
               "hint_warmup_fraction": 0.0}
    module = DistillationModule(num_features=dm.num_features, num_classes=2, backbone={**STUDENT, "window": dm.window},
                                optim={"lr": 1e-2, "weight_decay": 0.0}, loss={"name": "ce"}, teacher=teacher,
                                distill=distill)
    module.log = lambda *a, **k: None
    module.eval()
    module.on_fit_start()  # the hooks
    x, y = dm.dataset("train").__getitems__(list(range(64)))
    loss, logits = module.training_loss(x, y)
    student_maps, teacher_maps = module._collectors
    weights = method_weights(distill)
    expected = F.cross_entropy(logits, y)
    if weights["alpha"]:
        expected = (1 - 0.3) * expected + 0.3 * kd_logit_loss(logits, teacher(x), 2.0)
    pairs = module.pairs
    if weights["features"]:
        expected = expected + 0.7 * sum(hint_loss(student_maps[s], teacher_maps[t], proj) for (s, t), proj
                                        in zip(pairs, module.hint_projections)) / len(pairs)
    if weights["attention"]:
        expected = expected + 2.0 * sum(attention_loss(student_maps[s], teacher_maps[t]) for s, t in pairs) / len(pairs)
    assert weights == {"alpha": 0.3 if method == "combined" else 0.0, "features": 0.0 if method == "attention" else 0.7,
                       "attention": 0.0 if method == "features" else 2.0}
    assert torch.allclose(loss, expected, atol=1e-6) and not torch.allclose(loss, F.cross_entropy(logits, y))
    module.on_fit_end()


def test_tree_teacher_needs_the_logit_method():
    from mstr.training.tree_teacher import BoosterTeacher

    booster = BoosterTeacher("lightgbm", None, 6, 2, {})
    with pytest.raises(ValueError, match="network teacher"):
        DistillationModule(num_features=6, num_classes=2, backbone=STUDENT, optim={"lr": 1e-3, "weight_decay": 0.0},
                           loss={"name": "ce"}, teacher=booster, distill={"method": "features"})


def _logit_distiller_with_cached_targets(dm):
    """A logit-distilling student and its network teacher, with the teacher's logits cached per training row."""
    teacher = build_backbone(dm.num_features, 2, window=dm.window, **TEACHER).eval()
    module = DistillationModule(
        num_features=dm.num_features, num_classes=2, backbone={**STUDENT, "window": dm.window},
        optim={"lr": 1e-2, "weight_decay": 0.0}, loss={"name": "ce"}, teacher=teacher,
        distill={"method": "logits", "temperature": 2.0, "alpha": 0.5})
    module._teacher_logits = module._logits_of(dm.dataset("train"))
    return teacher, module


def test_cached_teacher_targets_are_the_teachers_logits_for_those_rows(small_synthetic_dm):
    """Logit-only distillation looks the (frozen) teacher's logits up by training row: the same numbers
    as running the teacher on the batch, for rows in any order."""
    dm = small_synthetic_dm
    teacher, module = _logit_distiller_with_cached_targets(dm)
    index = torch.tensor([17, 3, 250, 3, 99])
    x, _ = dm.dataset("train").gather(index)
    with torch.no_grad():
        assert torch.allclose(module._teacher_targets(x, x, index), teacher(x), atol=1e-5)


def test_windows_whose_context_was_swapped_get_the_teachers_answer_on_what_the_student_sees(small_synthetic_dm):
    """The cache holds the teacher's logits on each row's own window. A window that took another's
    earlier flows (data.context_swap) must be scored again by a teacher that reads them, or the student
    is taught the answer for a context it never saw; a teacher that reads the newest flow alone (a
    booster) keeps the cache."""
    from mstr.data.windows import IndexedWindows

    dm = small_synthetic_dm
    assert dm.window > 1
    teacher, module = _logit_distiller_with_cached_targets(dm)
    x, _, index, swapped = IndexedWindows(dm.dataset("train"), context_swap=0.5, seed=1).__getitems__(range(300))
    assert 0 < swapped.sum() < len(swapped)
    with torch.no_grad():
        targets = module._teacher_targets(x, x, index, swapped)
        assert torch.allclose(targets, teacher(x), atol=1e-5)
        stale = module._teacher_logits[index]
        assert (targets[swapped] - stale[swapped]).abs().max() > 1e-3  # where the cache would have been wrong
        teacher.reads_context = False
        assert torch.equal(module._teacher_targets(x, x, index, swapped), stale)


def test_a_failed_write_into_the_teacher_cache_leaves_no_temporary_file(small_synthetic_dm, compose_cfg, tmp_path,
                                                                         monkeypatch):
    """A full disk while a booster teacher was saved left tmp<pid>_... files in the shared cache, which
    nothing ever cleaned."""
    import errno

    from mstr.training import runner
    from mstr.training.tree_teacher import BoosterTeacher

    def save_half(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half a booster")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(BoosterTeacher, "save", save_half)
    cfg = compose_cfg(["distill.teacher=lightgbm"])
    with pytest.raises(OSError, match="No space left"):
        runner.obtain_tree_teacher(cfg, small_synthetic_dm, "lightgbm", tmp_path / "cache")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
