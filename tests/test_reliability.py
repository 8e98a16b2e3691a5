"""Interrupted runs, for real: `python -m mstr.train` killed with SIGKILL, or stopped by SIGTERM / SIGINT,
then restarted, ends with the same metrics as a run that was never interrupted; parallel jobs never
share an output dir; bad sweep values fail before any job.

The interrupted processes are the real entry point with one test hook: training stalls at a chosen
(fit, global step) until a signal comes, so that the signal lands mid-epoch at a known point.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

# Small and fast, yet every part runs: a distilled student (so a teacher with dropout is trained
# first), 3 epochs of 6 batches, a checkpoint every 2 steps.
ARGS = [
    "model=student", "data.source.n_flows=3000", "data.batch_size=64", "trainer.max_epochs=3",
    "trainer.limit_train_batches=6", "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false",
    "distill.teacher_model.backbone.widths=[16,32]", "callbacks.last_checkpoint.every_n_train_steps=2",
    "plots=false",  # a second of matplotlib a run; tests/test_train.py checks the PNGs
]
STEPS_PER_EPOCH = 6

STALL = '''
"""`python -m mstr.train`, except that training stalls at one (fit, global step) until a signal comes."""
import os, sys, time
from pathlib import Path
from mstr.training import last_checkpoint as ck
from mstr.training.signals import STOP

FIT, STEP = (int(v) for v in os.environ["STALL_AT"].split(":"))
MARKER = Path(os.environ["STALL_MARKER"])
fits = []
original = ck.LastCheckpoint.on_train_batch_end

def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
    if not fits or fits[-1] is not trainer:
        fits.append(trainer)
    if (len(fits), trainer.global_step) == (FIT, STEP):
        MARKER.write_text(f"{trainer.current_epoch} {batch_idx + 1}")
        deadline = time.time() + 300
        while not STOP.requested and time.time() < deadline:
            time.sleep(0.02)
    return original(self, trainer, pl_module, outputs, batch, batch_idx)

ck.LastCheckpoint.on_train_batch_end = on_train_batch_end
from mstr.train import main
sys.argv[0] = "mstr.train"
main()
'''


def _env(log_dir: Path, **extra) -> dict:
    # One intra-op thread: as fast as it gets for these tiny models, and the same in every process.
    env = {**os.environ, "MSTR_LOG_DIR": str(log_dir), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def _train(args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mstr.train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _stalled(args, env, cwd: Path, at: tuple[int, int], name: str) -> tuple[subprocess.Popen, tuple[int, int]]:
    """Start the entry point; return once training stalls at `at` = (fit, global step)."""
    script, marker = cwd / "stall.py", cwd / f"{name}.stalled"
    script.write_text(STALL)
    marker.unlink(missing_ok=True)
    out = open(cwd / f"{name}.out", "w")
    err = open(cwd / f"{name}.err", "w")
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=cwd, stdout=out, stderr=err,
                            env={**env, "STALL_AT": f"{at[0]}:{at[1]}", "STALL_MARKER": str(marker)})
    deadline = time.time() + 600
    while not marker.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError(f"{name} ended before stalling (rc {proc.returncode}): "
                                 + (cwd / f"{name}.err").read_text()[-3000:])
        time.sleep(0.05)
    epoch, batches = (int(v) for v in marker.read_text().split())
    return proc, (epoch, batches)


def _finish(proc: subprocess.Popen, name: str, cwd: Path, sig: int) -> tuple[int, str, str]:
    proc.send_signal(sig)
    rc = proc.wait(timeout=300)
    return rc, (cwd / f"{name}.out").read_text(), (cwd / f"{name}.err").read_text()


def _run_dirs(log_dir: Path) -> list[Path]:
    runs = log_dir / "train" / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def _position(ckpt: Path) -> tuple[int, int]:
    """Where in the training order a last.ckpt stands: (epoch, batches done in it)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["callbacks"]
    return tuple(next(v for k, v in state.items() if k.startswith("LastCheckpoint"))["position"])


def _epoch_rows(csv_file: Path) -> list[str]:
    return [row.split(",")[0] for row in csv_file.read_text().splitlines()[1:] if row.split(",")[0]]


def _numbers(metrics: dict) -> dict:
    """The metrics a resumed run must reproduce exactly: every number except timings."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not k.startswith("time/")}


def _assert_same_numbers(got: dict, expected: dict) -> None:
    got, expected = _numbers(got), _numbers(expected)
    assert got.keys() == expected.keys()
    diff = {k: (got[k], expected[k]) for k in got if got[k] != expected[k]}
    assert not diff, f"resumed run differs from the uninterrupted one: {diff}"
    assert len(got) > 25 and "test/auroc" in got and "teacher/test/auroc" in got


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run (in this process, with one thread like the subprocesses)."""
    from mstr.config import compose_config
    from mstr.train import run

    root = tmp_path_factory.mktemp("reference")
    cfg = compose_config("train", [*ARGS, f"paths.output_dir={root / 'run'}",
                                   f"paths.teacher_cache_dir={root / 'teachers'}"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(cfg)
    finally:
        torch.set_num_threads(threads)
    return {"metrics": json.loads((root / "run" / "metrics.json").read_text()), "run": root / "run"}


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict:
    """One run interrupted three times, each time mid-epoch, and restarted each time as a user would:

    1. SIGKILL while the teacher trains (its last save: epoch 1 after 2 batches);
    2. the same command + `ckpt_path=last`: finds the run dir, resumes the teacher, trains the student
       and gets SIGTERM in its epoch 1, batch 3;
    3. the command that message printed (`resume=auto hydra.run.dir=...`): SIGINT in epoch 2, batch 5;
    4. that command again: finishes.

    With W&B logging (offline) and a recognisable fake API key in the environment.
    """
    root = tmp_path_factory.mktemp("interrupted")
    env = _env(root / "logs", WANDB_API_KEY=FAKE_KEY)
    args = [*ARGS, "logger=wandb"]
    result: dict = {"root": root, "env": env, "args": args}

    proc, result["kill_at"] = _stalled(args, env, root, at=(1, STEPS_PER_EPOCH + 3), name="kill")
    result["kill"] = _finish(proc, "kill", root, signal.SIGKILL)
    (run,) = _run_dirs(root / "logs")
    result["run"] = run
    result["after_kill"] = _state(run)

    proc, result["term_at"] = _stalled([*args, "ckpt_path=last"], env, root, at=(2, STEPS_PER_EPOCH + 3),
                                       name="term")
    result["term"] = _finish(proc, "term", root, signal.SIGTERM)
    result["after_term"] = _state(run)
    command = shlex.split(result["term"][2].strip().splitlines()[-1].split("resume with: ", 1)[1])
    assert command[:3] == ["python", "-m", "mstr.train"]
    result["command"] = command

    proc, result["int_at"] = _stalled(command[3:], env, root, at=(1, 2 * STEPS_PER_EPOCH + 5), name="int")
    result["int"] = _finish(proc, "int", root, signal.SIGINT)
    result["after_int"] = _state(run)
    result["final"] = _train(command[3:], env, root)
    result["run_dirs"] = _run_dirs(root / "logs")
    return result


FAKE_KEY = "mstr-fake-api-key-7f3a9c1e5b2d4068"


def _state(run: Path) -> dict:
    last = {name: run / sub / "last.ckpt" for name, sub in (("teacher", "teacher/checkpoints"),
                                                            ("model", "checkpoints"))}
    return {"metrics.json": (run / "metrics.json").exists(),
            **{name: _position(path) if path.is_file() else None for name, path in last.items()}}


@pytest.mark.slow
def test_sigkill_mid_epoch_leaves_the_last_saved_step_and_the_restart_resumes_there(interrupted):
    assert interrupted["kill_at"] == (1, 3)  # killed in the teacher's epoch 1, batch 3
    rc, _, _ = interrupted["kill"]
    assert rc == -signal.SIGKILL
    assert interrupted["after_kill"] == {"metrics.json": False, "teacher": (1, 2), "model": None}
    _, out, _ = interrupted["term"]
    assert "resuming at epoch 1 after 2 batches of it" in out  # `ckpt_path=last` found the dir and went on


@pytest.mark.slow
def test_sigterm_saves_last_ckpt_at_that_step_and_exits_cleanly_saying_how_to_resume(interrupted):
    rc, out, err = interrupted["term"]
    assert rc == 128 + signal.SIGTERM
    assert interrupted["term_at"] == (1, 3)
    # saved where the signal came (step 9), not at a periodic save point (every 2 steps)
    assert interrupted["after_term"] == {"metrics.json": False, "teacher": (3, 0), "model": (1, 3)}
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted by SIGTERM: saved ") and "checkpoints/last.ckpt" in last
    assert f"resume=auto hydra.run.dir={interrupted['run']}" in last
    assert "Traceback" not in err


@pytest.mark.slow
def test_sigint_saves_last_ckpt_at_that_step_and_exits_cleanly(interrupted):
    rc, out, err = interrupted["int"]
    assert rc == 128 + signal.SIGINT
    assert "resuming at epoch 1 after 3 batches of it" in out
    assert interrupted["int_at"] == (2, 5)
    assert interrupted["after_int"] == {"metrics.json": False, "teacher": (3, 0), "model": (2, 5)}
    assert err.strip().splitlines()[-1].startswith("interrupted by SIGINT: saved ")
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


@pytest.mark.slow
def test_an_interrupted_run_ends_with_the_same_metrics_as_an_uninterrupted_one(interrupted, reference):
    final = interrupted["final"]
    assert final.returncode == 0, final.stderr[-3000:]
    assert "resuming at epoch 2 after 5 batches of it" in final.stdout
    run = interrupted["run"]
    assert interrupted["run_dirs"] == [run]  # every restart continued the same run dir
    metrics = json.loads((run / "metrics.json").read_text())
    _assert_same_numbers(metrics, reference["metrics"])
    assert metrics["teacher/source"] == str(run / "teacher" / "checkpoints" / "best.ckpt")
    assert metrics["best_checkpoint"] == str(run / "checkpoints" / "best.ckpt")
    # the curves were kept across the restarts: the epoch-end rows of every epoch, as in the uninterrupted
    # run (rows logged but not yet flushed when SIGKILL came are lost, e.g. an epoch's first learning rate)
    assert _epoch_rows(run / "teacher/csv/metrics.csv") == _epoch_rows(reference["run"] / "teacher/csv/metrics.csv")
    # the training throughput counts every stretch, not the last one alone (its state rides in last.ckpt)
    counted = [_throughput_state(r / "checkpoints" / "last.ckpt") for r in (run, reference["run"])]
    assert counted[0]["windows"] == counted[1]["windows"] > 0 and counted[0]["seconds"] > 0
    assert "time/train_windows_per_s" in metrics


def _throughput_state(ckpt: Path) -> dict:
    states = torch.load(ckpt, map_location="cpu", weights_only=True)["callbacks"]
    return next(v for k, v in states.items() if k.startswith("TrainingThroughput"))


@pytest.mark.slow
def test_wandb_run_resumes_under_the_same_id(interrupted):
    run = interrupted["run"]
    run_id = (run / "wandb_id.txt").read_text().strip()
    offline_runs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 3  # the student's first attempt and its two resumptions
    assert all(p.name.endswith(f"-{run_id}") for p in offline_runs)
    assert all((p / f"run-{run_id}.wandb").is_file() for p in offline_runs)
    for path in run.rglob("*"):  # and the API key is nowhere in the run dir
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_a_finished_run_is_reported_not_rerun(interrupted, compose_cfg):
    from mstr.train import run

    out = interrupted["run"]
    before = (out / "metrics.json").read_bytes()
    cfg = compose_cfg([*interrupted["args"], "resume=auto"], out=out)
    assert run(cfg) == json.loads(before)
    assert (out / "metrics.json").read_bytes() == before


@pytest.mark.slow
def test_parallel_jobs_never_share_an_output_dir(tmp_path):
    """Two runs and a two-job sweep started at the same moment: four distinct dirs, all complete."""
    env = _env(tmp_path / "logs")
    common = ["model=student", "distill=none", "debug=fast", "data.source.n_flows=3000",
              "trainer.enable_progress_bar=false"]
    procs = [subprocess.Popen([sys.executable, "-m", "mstr.train", *args], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for args in (common, common, ["-m", *common, "seed=0,1"])]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    runs = _run_dirs(tmp_path / "logs")
    (sweep,) = list((tmp_path / "logs" / "train" / "multiruns").iterdir())
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 2 and [p.name for p in jobs] == ["0", "1"]
    for job_dir in [*runs, *jobs]:
        assert (job_dir / "metrics.json").is_file()
    assert json.loads((jobs[1] / "metrics.json").read_text())["seed"] == 1
    assert len({p.name for p in runs} | {sweep.name}) == 3


@pytest.mark.slow
@pytest.mark.parametrize("args, key", [
    (["-m", "distill.temperature=2,0"], "distill.temperature"),     # the second job's value is bad
    (["-m", "data=synthetic,nope"], "nope"),                        # so is a group option
    (["seed=0,1"], "-m"),                                           # a sweep without -m
    (["resume=maybe"], "resume"),
])
def test_bad_sweep_values_fail_before_any_job_with_one_line(tmp_path, args, key):
    proc = subprocess.run([sys.executable, "-m", "mstr.train", *args], cwd=tmp_path, env=_env(tmp_path / "out"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ckpt_path_last_without_an_unfinished_run_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mstr.train", "ckpt_path=last"], cwd=tmp_path,
                          env=_env(tmp_path / "out"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ckpt_path=last" in lines[0] and "hydra.run.dir" in lines[0]


def test_a_run_dir_in_use_by_a_running_job_is_refused(compose_cfg, tmp_path):
    from mstr.errors import MstrError
    from mstr.jobs.multirun import record_failure_in
    from mstr.jobs.rundir import RunLock
    from mstr.train import run

    with RunLock(tmp_path / "run"):  # as a running job holds it
        with pytest.raises(MstrError, match="in use by another running job") as refused:
            run(compose_cfg(["model=student", "distill=none", "resume=auto"]))
        # a job started alongside it (past the command line's check) marks the running job as failed no more
        record_failure_in(tmp_path / "run", refused.value)
    assert not (tmp_path / "run" / "job_error.json").exists()


def test_a_run_dir_in_use_is_refused_before_hydra_writes_into_it(tmp_path):
    """A second job given a running job's dir stops at the command line: nothing of it (its config, its
    log, a job_error.json that marks the running job as failed) lands in the dir."""
    from mstr.jobs.rundir import RunLock

    run_dir = tmp_path / "run"
    with RunLock(run_dir):  # as a running job holds it
        proc = subprocess.run([sys.executable, "-m", "mstr.train", "model=teacher", f"hydra.run.dir={run_dir}"],
                              cwd=tmp_path, env=_env(tmp_path / "out"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by another running job" in lines[0] and str(run_dir) in lines[0]
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]

def test_an_output_dir_that_cannot_be_written_is_one_line_exit_2_before_any_work(tmp_path):
    """Hydra made the run dir with a traceback; a teacher cache that cannot be written failed once the
    teacher had trained. Each is now named on the command line, and nothing is made."""
    from mstr.config import compose_config
    from mstr.errors import ConfigError
    from mstr.train import _prepare

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, "-m", "mstr.train", f"hydra.run.dir={blocker / 'run'}"], cwd=tmp_path,
                          env=_env(tmp_path / "out"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: hydra.run.dir={blocker / 'run'}: cannot write into {blocker} (Not a directory); give a folder "
        "you can write to"]
    ok = f"hydra.run.dir={tmp_path / 'run'}"
    for argv, key in ([[f"paths.log_dir={blocker}"], "paths.log_dir"],
                      [[f"paths.teacher_cache_dir={blocker / 't'}", ok], "paths.teacher_cache_dir"],
                      [["-m", "seed=0,1", f"hydra.sweep.dir={blocker / 's'}"], "hydra.sweep.dir"]):
        overrides = [a for a in argv if a != "-m" and not a.startswith(("hydra.", "seed="))]
        with pytest.raises(ConfigError, match=rf"^{key}=.*: cannot write into {blocker} \(Not a directory\)"):
            _prepare(argv, compose_config("train", overrides))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]

def _file_size_limit(limit: int):
    """A preexec_fn: writes past `limit` bytes fail with EFBIG (Python ignores SIGXFSZ), as on a full disk."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_a_write_that_fails_for_room_leaves_no_half_file(tmp_path):
    from mstr.jobs.report import write_json

    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})
    code = ("import sys; from pathlib import Path; from mstr.jobs.report import write_json; "
            "write_json(Path(sys.argv[1]), {'a': 'x' * 100_000})")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                          preexec_fn=_file_size_limit(10_000))
    assert proc.returncode != 0 and "File too large" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"] and json.loads(path.read_text()) == {"a": 1}


def test_a_disk_too_full_for_the_error_record_still_reports_the_error(tmp_path, monkeypatch):
    import errno

    from mstr.errors import MstrError
    from mstr.jobs import multirun, report

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(report, "write_json", full)
    err, message = multirun.record_failure_in(tmp_path, MstrError("the disk is full"))
    assert isinstance(err, MstrError) and message == "the disk is full" and not list(tmp_path.iterdir())

@pytest.mark.slow
def test_a_write_that_fails_for_room_mid_run_is_one_line_saying_how_to_resume(tmp_path):
    """A full disk ended a run in a traceback from deep inside matplotlib or Lightning."""
    run_dir = tmp_path / "run"
    args = ["model=teacher", "debug=fast", "plots=true", "data.source.n_flows=3000", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run([sys.executable, "-m", "mstr.train", *args], cwd=tmp_path, env=_env(tmp_path / "out"),
                          capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(15_000))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: a write failed while the job wrote into {run_dir} "
                                                   "(File too large); free space there, then resume with: ")
    assert shlex.split(lines[0].split("resume with: ")[1])[3:] == [*args[:-1], "resume=auto", f"hydra.run.dir={run_dir}"]
    assert "File too large" in json.loads((run_dir / "job_error.json").read_text())["error"]
    assert not (run_dir / "metrics.json").exists()

def test_ctrl_c_while_the_command_line_is_checked_is_one_line_exit_130(monkeypatch, capsys):
    """The first seconds (imports, composing and checking the config) ended in a KeyboardInterrupt traceback."""
    from mstr import cli
    from mstr.train import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "preflight", interrupted)
    monkeypatch.setattr(sys, "argv", ["mstr.train", "seed=1"])
    try:
        main()
    except KeyboardInterrupt:  # caught here, or it would stop the test session as it stopped the command
        pytest.fail("Ctrl+C came out of main() as a KeyboardInterrupt (a traceback)")
    except SystemExit as stopped:
        assert stopped.code == 130
    assert capsys.readouterr().err == "interrupted by SIGINT: no checkpoint was saved yet\n"

def test_resume_finds_the_newest_unfinished_idle_run_of_the_same_config(tmp_path):
    from mstr.jobs.rundir import CONFIG_KEY_FILE, RunLock, find_resumable

    def make(name: str, key: str, ckpt: str = "checkpoints/last.ckpt", finished: bool = False) -> Path:
        run = tmp_path / name
        (run / ckpt).parent.mkdir(parents=True)
        (run / ckpt).write_bytes(b"x")
        (run / CONFIG_KEY_FILE).write_text(key + "\n")
        if finished:
            (run / "metrics.json").write_text("{}")
        time.sleep(0.02)
        return run

    older = make("a", "k1", ckpt="teacher/checkpoints/last.ckpt")
    newer = make("b", "k1")
    make("c", "k2")                    # another config
    make("d", "k1", finished=True)     # finished
    busy = make("e", "k1")             # newest, but a job is running in it
    with RunLock(busy):
        assert find_resumable(tmp_path, "k1") == newer
        (newer / "metrics.json").write_text("{}")
        assert find_resumable(tmp_path, "k1") == older
    assert find_resumable(tmp_path, "k1") == busy
    assert find_resumable(tmp_path, "k3") is None


def test_a_run_dir_given_that_holds_another_run_is_refused_before_hydra_writes_into_it(tmp_path, compose_cfg):
    """Hydra writes the job's `.hydra/config.yaml` as it starts: pointed at a finished run (or at a run
    of another config), the dir then showed one config beside another run's results."""
    from mstr.config import compose_config
    from mstr.errors import ConfigError
    from mstr.jobs.rundir import CONFIG_KEY_FILE, config_key
    from mstr.train import _prepare

    args = ["model=student", "distill=none", "seed=3"]
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / CONFIG_KEY_FILE).write_text(config_key(compose_config("train", args)) + "\n")
    given = f"hydra.run.dir={run_dir}"
    assert _prepare([*args, given], compose_config("train", args)) == [*args, given]  # unfinished: starts again
    (run_dir / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"holds a finished run of this config \(metrics.json\); give a new dir"):
        _prepare([*args, given], compose_config("train", args))
    resume = [*args, "resume=auto", given]  # its resumption reports it
    assert _prepare(resume, compose_config("train", [*args, "resume=auto"])) == resume
    other = ["model=student", "distill=none", "seed=4"]
    for extra in ([], ["resume=auto"]):
        with pytest.raises(ConfigError, match=r"holds a run of another config \(see its .hydra/config.yaml\)"):
            _prepare([*other, *extra, given], compose_config("train", [*other, *extra]))
    assert _prepare([*other, f"hydra.run.dir={tmp_path / 'new'}"], compose_config("train", other))


@pytest.mark.slow
def test_a_signal_during_an_epochs_validation_stops_after_that_epoch_is_logged(compose_cfg, tmp_path, monkeypatch):
    """The epoch-end save comes before Lightning logs the epoch's training metrics, and the resumed
    run starts at the next epoch: a stop at the save lost the epoch's training row for good."""
    from mstr.errors import Interrupted
    from mstr.train import run
    from mstr.training import last_checkpoint as ck
    from mstr.training.signals import STOP

    original = ck.LastCheckpoint.on_train_epoch_end

    def signal_in_validation(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            STOP.handle(signal.SIGINT, None)  # as if Ctrl-C came while epoch 0 validated
        return original(self, trainer, pl_module)

    monkeypatch.setattr(ck.LastCheckpoint, "on_train_epoch_end", signal_in_validation)
    out = tmp_path / "run"
    cfg = compose_cfg(["distill=none", "data.source.n_flows=2000", "trainer.max_epochs=3",
                       "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
                       "trainer.enable_progress_bar=false"], out=out)
    with pytest.raises(Interrupted) as stopped:
        run(cfg)
    assert stopped.value.saved and _position(out / "checkpoints" / "last.ckpt") == (1, 0)
    rows = (out / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "train/loss_epoch" in header
    train_rows = [r for r in rows[1:] if r.split(",")[header.index("train/loss_epoch")]]
    assert [r.split(",")[header.index("epoch")] for r in train_rows] == ["0"]
