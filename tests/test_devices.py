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
    # with the progress bar, as a user runs it: Lightning's bar read the epoch's metrics on rank zero
    # alone, and both ranks hung at the end of the first epoch (mstr.training.progress)
    proc = run_cli("mstr.train", [*SMALL, "model=student", "distill=logits", "trainer=ddp_cpu",
                                  "trainer.enable_progress_bar=true", f"hydra.run.dir={run_dir}",
                                  f"paths.teacher_cache_dir={tmp_path / 'teachers'}"], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in (run_dir / "train_ddp_process_1.log").read_text()  # rank 1 trained alongside
    assert "sync_dist=True" not in proc.stderr  # epoch metrics are torchmetrics', gathered over the ranks already
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/f1", "teacher/test/f1", "val/f1_best", "compression/params_ratio"):
        assert key in metrics
    assert metrics["time/train_windows_per_s"] > 0
    # rank zero scored every test row, unsynced and unduplicated: the same numbers as scoring the
    # best checkpoint here, in one process
    from mstr.training import runner
    from mstr.training.checkpoint import load_classifier

    dm = instantiate(compose_cfg([*SMALL, "model=student"]).data)
    dm.setup()
    again = runner.test_metrics(load_classifier(metrics["best_checkpoint"]), dm)[0]
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

    teacher = build_backbone(6, 2, window=4, token_dim=8, widths=[8, 16, 32]).train()
    student = build_backbone(6, 2, window=4, token_dim=4, widths=[4, 8]).eval()
    params = [p for p in teacher.parameters()]
    report = compression_report(teacher, student, 4, {}, {})
    assert report["compression/params_ratio"] > 1
    assert teacher.training and not student.training  # modes restored
    assert [p for p in teacher.parameters()] == params and all(p.device.type == "cpu" for p in params)
    assert all(p.requires_grad for p in params)
    x = torch.zeros(2, 4, 6)
    assert teacher(x).shape == (2, 2)


def test_windows_moved_to_a_device_gather_the_same_batches(small_synthetic_dm):
    """Every tensor a gather reads goes to the device (the meta device shows it without a GPU; the CUDA
    run is in test_gpu.py), the original stays where it was, and the same rows come back."""
    dataset = small_synthetic_dm.dataset("train")
    tensors = ("features", "labels", "_order", "_position", "_run_start", "_offsets")
    on_meta = dataset.to(torch.device("meta"))
    assert on_meta is not dataset and all(getattr(on_meta, n).device.type == "meta" for n in tensors)
    assert all(getattr(dataset, n).device.type == "cpu" for n in tensors)
    assert [getattr(on_meta, n).shape for n in tensors] == [getattr(dataset, n).shape for n in tensors]
    moved = dataset.to(torch.device("cpu"))
    idx = torch.tensor([0, 5, 17, len(dataset) - 1])
    for a, b in zip(dataset.gather(idx), moved.gather(idx)):
        assert torch.equal(a, b)


def test_data_on_device_trains_from_batches_already_on_the_module_device(compose_cfg):
    from mstr.train import run

    seen = []
    cfg = compose_cfg([*SMALL, "model=student", "distill=none", "data.on_device=true", "test=false"])
    import pytorch_lightning as pl

    original = pl.LightningModule.on_train_batch_start

    def spy(self, batch, batch_idx):
        seen.append((batch[0].device, self.device))
        return original(self, batch, batch_idx)

    from mstr.data.windows import FlowWindowDataset

    moved_to, to = [], FlowWindowDataset.to

    def recorded(self, device):
        moved_to.append(torch.device(device))
        return to(self, device)

    pl.LightningModule.on_train_batch_start = spy
    FlowWindowDataset.to = recorded
    try:
        metrics = run(cfg)
    finally:
        pl.LightningModule.on_train_batch_start = original
        FlowWindowDataset.to = to
    assert seen and all(batch == module for batch, module in seen)
    # the fit's splits were moved to the trainer's device (the CPU here), train and validation at least
    assert len(moved_to) >= 2 and set(moved_to) == {torch.device("cpu")}
    assert metrics["time/train_windows_per_s"] > 0


def test_data_on_device_refuses_loader_workers(compose_cfg):
    from mstr.config import validate
    from mstr.errors import ConfigError

    with pytest.raises(ConfigError, match="data.num_workers=0"):
        validate(compose_cfg(["data.on_device=true", "data.num_workers=2"]))


@pytest.mark.slow
def test_gpu_check_script_runs_its_matrix_on_cpu(tmp_path):
    """scripts/gpu-check.sh with MSTR_CHECK_DEVICE=cpu: every job of the GPU matrix runs (tiny) and the
    table has a row with test metrics for each run."""
    import os
    import subprocess
    import sys

    from _cli import REPO, cli_env

    out = tmp_path / "check"
    tiny = ["trainer.max_epochs=1", "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=2"]  # for every job, real data (experiment=nsl_kdd) included
    env = cli_env(tmp_path / "logs", MSTR_CHECK_DEVICE="cpu", MSTR_CHECK_OUT=str(out), MSTR_CHECK_EXTRA=" ".join(tiny),
                  PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])  # its `python`: this one
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| job")]
    jobs = {row.split("|")[1].strip() for row in rows}
    assert jobs == {"cpu-none", "cpu-logits", "cpu-features", "cpu-attention", "cpu-combined", "ddp", "nsl_kdd",
                    "multirun", "optuna"}
    assert sum(row.split("|")[1].strip() == "multirun" for row in rows) == 2  # one row per job of the multirun
    assert sum(row.split("|")[1].strip() == "optuna" for row in rows) == 2  # and per trial of the sweep
    for row in rows:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[3] in ("", "0") and cells[9]  # exit 0; training windows/s reported
