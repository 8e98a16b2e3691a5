"""Multirun for real: a grid whose failing jobs do not stop the others (and whose W&B offline runs carry
config, group and summary, and which mstr.compare turns into a table and plots); the submitit local
launcher running a 2-job grid; the one-GPU-per-job preset."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from _cli import SMALL, run_cli
from _wandb_records import run_contents

# 8 jobs: temperature x learning rate x validation share; the 4 whose validation carve leaves training
# one class fail when their data is made
GRID = ["-m", *SMALL, "model=student", "distill=logits", "logger=wandb", "distill.temperature=2,4",
        "model.optim.lr=0.003,0.01", "data.val_fraction=0.15,0.999", "plots=true"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    sweep = root / "sweep"
    proc = run_cli("mstr.train", [*GRID, f"hydra.sweep.dir={sweep}", f"paths.teacher_cache_dir={root / 'teachers'}"],
                   root)
    return sweep, proc


@pytest.mark.slow
def test_failing_jobs_leave_the_rest_of_the_grid_finished(grid):
    sweep, proc = grid
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 8
    failed = [j for j in jobs if (j / "job_error.json").is_file()]
    finished = [j for j in jobs if (j / "metrics.json").is_file()]
    assert len(failed) == 4 and len(finished) == 4 and not set(failed) & set(finished)
    for job in failed:
        assert "only one class" in json.loads((job / "job_error.json").read_text())["error"]
        assert "data.val_fraction=0.999" in (job / ".hydra" / "overrides.yaml").read_text()
    assert proc.returncode == 2  # user errors: exit 2, one line naming them, no traceback
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 4 of 8 jobs failed (the others finished):") and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_wandb_offline_runs_carry_config_group_and_summary(grid):
    sweep, _ = grid
    teachers_trained = 0
    for job in sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file()):
        (run_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
        run = run_contents(run_file)
        assert run["group"] == f"train-{sweep.name}"  # every job of the multirun in one group
        config = yaml_config(job)
        assert run["config"]["distill.temperature"] == config["distill"]["temperature"]  # flat, override names
        assert run["config"]["model.optim.lr"] == config["model"]["optim"]["lr"]
        metrics = json.loads((job / "metrics.json").read_text())
        for key in ("test/f1", "teacher/test/f1", "val/f1_best", "compression/params_ratio", "best_checkpoint"):
            assert run["summary"][key] == metrics[key]
        assert not run["artifacts"]  # checkpoints only when asked (logger.wandb.log_model=true)
        # the run's plots beside its numbers (no curves.png of its own: W&B keeps the history)
        for name in ("confusion_matrix", "roc", "pr"):
            assert run["summary"][f"plots/{name}/count"] == 1, name
        assert "plots/curves/count" not in run["summary"]
        # the job that trained the shared teacher (the others reuse it from the cache) shows its curves
        trained_teacher = (job / "teacher" / "curves.png").is_file()
        assert ("plots/teacher_curves/count" in run["summary"]) == trained_teacher
        teachers_trained += trained_teacher
    assert teachers_trained >= 1


def yaml_config(job):
    import yaml

    return yaml.safe_load((job / ".hydra" / "config.yaml").read_text())


@pytest.mark.slow
def test_compare_writes_the_table_and_plots_of_a_real_multirun(grid, capsys):
    from mstr.compare import main

    sweep, _ = grid
    assert main([str(sweep), "--metric", "val/f1_best"]) == 0
    out = capsys.readouterr().out
    compare = sweep / "compare"
    table = (compare / "runs.md").read_text()
    assert table.strip() in out
    with (compare / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert {"distill.temperature", "model.optim.lr", "data.val_fraction", "teacher/test/f1"} <= set(rows[0])
    finished = [r for r in rows if r["status"] == "finished"]
    values = [float(r["val/f1_best"]) for r in finished]
    assert len(finished) == 4 and values == sorted(values, reverse=True)  # best first, failed runs last
    assert all(r["status"].startswith("failed: ") for r in rows[4:])
    for job in finished:  # each row is its run's metrics
        metrics = json.loads((sweep / job["run"] / "metrics.json").read_text())
        assert float(job["test/f1"]) == pytest.approx(metrics["test/f1"])
    for name in ("val_f1_best_vs_distill.temperature.png", "val_f1_best_vs_model.optim.lr.png",
                 "parallel_coordinates.png", "teacher_vs_student.png"):
        with Image.open(compare / name) as image:
            assert image.size[0] > 300 and image.size[1] > 300
        assert f"wrote {compare / name}" in out
    assert not (compare / "val_f1_best_vs_data.val_fraction.png").exists()  # not varied among finished runs


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_two_job_grid(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("mstr.train", ["-m", *SMALL, "model=student", "distill=none", "seed=0,1",
                                  "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["seed"] == int(job)
    assert len(list(sweep.glob(".submitit/*/*_0_log.out"))) == 2  # each job ran as its own submitit job


def test_local_gpus_preset_runs_one_job_per_gpu(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    from mstr.jobs import multirun
    from mstr.config import config_dir, register_resolvers
    from mstr.training import distributed

    monkeypatch.setattr(distributed, "visible_gpus", lambda: ["0", "1", "2"])
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["trainer=gpu", "hydra=local_gpus", f"paths.output_dir={tmp_path}"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.LocalLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 3 and cfg.hydra.sweeper.max_batch_size == 3
    picked = []
    for num in range(4):
        with read_write(cfg.hydra.job), open_dict(cfg):
            cfg.hydra.job.num = num
            cfg.trainer.devices = 1
        HydraConfig.instance().set_config(cfg)
        try:
            multirun.spread_over_gpus(cfg)
        finally:
            HydraConfig.instance().cfg = None
        picked.append(list(cfg.trainer.devices))
    assert picked == [[0], [1], [2], [0]]


def test_the_failure_line_says_others_finished_only_where_some_did(tmp_path):
    from mstr.jobs.multirun import FailedJobs, failure_report

    record = {"error": "data.path: no such file", "user_error": True}
    FailedJobs.found, FailedJobs.jobs = [(tmp_path / "0", record), (tmp_path / "1", record)], 2
    line, code = failure_report()
    assert line.startswith("2 of 2 jobs failed: ") and code == 2  # "(the others finished)": there were none
    FailedJobs.jobs = 3
    assert failure_report()[0].startswith("2 of 3 jobs failed (the others finished): ")
    FailedJobs.found, FailedJobs.jobs = [], 0


@pytest.mark.slow
def test_a_sigterm_to_a_submitit_local_sweep_stops_its_jobs_which_save_their_last_checkpoint(tmp_path):
    """Each submitit_local job runs under a controller process of its own: a SIGTERM to the sweep's
    process (a scheduler's, `kill`) ended it alone, and both jobs trained on, orphaned."""
    import contextlib
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from _cli import cli_env

    sweep = tmp_path / "sweep"
    args = ["-m", "data.source.n_flows=3000", "trainer.max_epochs=500", "callbacks.early_stopping.patience=1000",
            "trainer.enable_progress_bar=false", "logger=csv", "model=student", "distill=none", "plots=false",
            "seed=0,1", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-m", "mstr.train", *args], cwd=tmp_path, env=cli_env(tmp_path / "logs"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    jobs: list = []
    try:
        deadline = time.monotonic() + 240
        while not all((sweep / job / "checkpoints" / "last.ckpt").is_file() for job in "01"):
            assert proc.poll() is None and time.monotonic() < deadline, "the jobs never started training"
            time.sleep(0.5)
        jobs = psutil.Process(proc.pid).children(recursive=True)  # the controllers and the jobs under them
        assert len(jobs) >= 4
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1]
        gone, alive = psutil.wait_procs(jobs, timeout=10)
    finally:  # nothing is left training after a failure
        if proc.poll() is None:
            proc.kill()
        for job in jobs:
            with contextlib.suppress(psutil.NoSuchProcess):
                job.kill()
    assert proc.returncode == 143, err[-2000:]
    assert not alive, [p.cmdline() for p in alive]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"interrupted by SIGTERM: saved {sweep}/<job>/checkpoints/last.ckpt (2 jobs); resume "
                           "with: python -m mstr.train -m hydra/launcher=submitit_local "), line
    assert line.endswith(f"seed=0,1 resume=auto hydra.sweep.dir={sweep}") and "Traceback" not in err
    # each job stopped as a signal stops a run: last.ckpt saved, no results, its log says so
    assert not any((sweep / job / "metrics.json").exists() for job in "01")
    logs = [path.read_text() for path in (sweep / ".submitit").glob("*/*_0_log.err")]
    assert len(logs) == 2 and all("interrupted by SIGTERM: saved" in log for log in logs)
