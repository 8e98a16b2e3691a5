"""Device paths that need no GPU: DDP over 2 CPU processes (gloo), in a run and under multirun, and
the compression report leaving models where they were. The GPU matrix is tests/test_gpu.py."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from _cli import SMALL, run_cli


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_teacher_and_student_and_scores_on_rank_zero(tmp_path, compose_cfg):
    run_dir = tmp_path / "ddp"
    proc = run_cli("mstr.train", [*SMALL, "model=student", "distill=logits", "trainer=ddp_cpu",
                                  f"hydra.run.dir={run_dir}", f"paths.teacher_cache_dir={tmp_path / 'teachers'}"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in (run_dir / "train_ddp_process_1.log").read_text()  # rank 1 trained alongside
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/f1", "teacher/test/f1", "val/f1_best", "compression/params_ratio"):
        assert key in metrics
    assert metrics["time/train_windows_per_s"] > 0
    # rank zero scored every test row, unsynced and unduplicated: the same numbers as scoring the
    # best checkpoint here, in one process
    from mstr.training.checkpoint import load_classifier
    from mstr.training.evaluation import evaluate_tests

    dm = instantiate(compose_cfg([*SMALL, "model=student"]).data)
    dm.setup()
    again = evaluate_tests(load_classifier(metrics["best_checkpoint"]), dm.test_loaders(), dm.num_classes)
    for key, value in again.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.slow
def test_ddp_under_multirun_starts_the_ranks_of_each_job_in_its_own_dir(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("mstr.train", ["-m", *SMALL, "model=student", "distill=none", "trainer=ddp_cpu", "seed=0,1",
                                  f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert "MEMBER: 2/2" in (sweep / job / "train_ddp_process_1.log").read_text()
        assert json.loads((sweep / job / "metrics.json").read_text())["seed"] == int(job)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]  # no rank ran the sweep again
    assert not (tmp_path / "logs").exists()  # nor a job of its own elsewhere


def test_compression_report_puts_the_models_back_as_they_were():
    from mstr.models import build_backbone
    from mstr.training.compression import compression_report

    teacher = build_backbone(6, 2, embed_dim=16, widths=[16, 32]).train()
    student = build_backbone(6, 2, embed_dim=8, widths=[8]).eval()
    params = [p for p in teacher.parameters()]
    report = compression_report(teacher, student, 4, {}, {})
    assert report["compression/params_ratio"] > 1
    assert teacher.training and not student.training  # modes restored
    assert [p for p in teacher.parameters()] == params and all(p.device.type == "cpu" for p in params)
    assert all(p.requires_grad for p in params)
    x = torch.zeros(2, 4, 6)
    assert teacher(x).shape == (2, 2)
