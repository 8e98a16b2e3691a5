"""The GPU matrix: runs where CUDA is present (`python -m pytest -m gpu`), skipped elsewhere. Every
distillation method trained on the GPU end to end (compression report included), DDP over the visible
GPUs, data held on the device, checkpoints written on the GPU loading anywhere. The CPU equivalents
run in CI: tests/test_devices.py, and scripts/gpu-check.sh with MSTR_CHECK_DEVICE=cpu."""

from __future__ import annotations

import json

import pytest
import torch

from _cli import SMALL, run_cli

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("method", ["none", "logits", "features", "attention", "combined"])
def test_every_distill_method_trains_and_reports_on_the_gpu(method, compose_cfg):
    from mstr.train import run
    from mstr.training.checkpoint import load_classifier

    metrics = run(compose_cfg([*SMALL, "trainer=gpu", "model=student", f"distill={method}"]))
    assert metrics["test/f1"] > 0.3 and metrics["time/train_windows_per_s"] > 0
    if method != "none":
        assert metrics["compression/params_ratio"] > 1 and "teacher/test/f1" in metrics
    model = load_classifier(metrics["best_checkpoint"])  # written on the GPU, loads on the CPU
    x = torch.randn(16, model.hparams.data_signature["window"], model.hparams.num_features)
    with torch.no_grad():
        on_cpu = model(x)
        on_gpu = model.cuda()(x.cuda()).cpu()
    assert torch.allclose(on_cpu, on_gpu, atol=1e-4)


def test_ddp_on_the_visible_gpus(tmp_path):
    run_dir = tmp_path / "ddp"
    proc = run_cli("mstr.train", [*SMALL, "trainer=ddp", "model=student", "distill=logits", f"hydra.run.dir={run_dir}"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/f1" in metrics and "teacher/test/f1" in metrics


def test_data_on_device_gathers_batches_on_the_gpu(small_synthetic_dm):
    moved = small_synthetic_dm.dataset("train").to(torch.device("cuda"))
    x, y = moved.__getitems__([0, 3, 7])
    assert x.is_cuda and y.is_cuda
    cpu_x, cpu_y = small_synthetic_dm.dataset("train").__getitems__([0, 3, 7])
    assert torch.equal(x.cpu(), cpu_x) and torch.equal(y.cpu(), cpu_y)


def test_compression_report_of_gpu_models_leaves_them_on_the_gpu():
    from mstr.models import build_backbone
    from mstr.training.compression import compression_report

    teacher = build_backbone(6, 2, window=4, token_dim=8, widths=[8, 16, 32]).cuda()
    student = build_backbone(6, 2, window=4, token_dim=4, widths=[4, 8]).cuda()
    report = compression_report(teacher, student, 4, {}, {})
    assert report["compression/params_ratio"] > 1
    assert all(p.is_cuda for p in [*teacher.parameters(), *student.parameters()])
