"""Optuna sweeps for real: two worker processes share a 4-trial study in SQLite; the same sweep killed
mid-trial resumes to the full count; a failing trial is recorded while the study goes on; hopeless
trials are pruned during training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import pytorch_lightning
import yaml
from optuna.trial import TrialState

from _cli import SMALL, cli_env, run_cli

STUDY_OVERRIDES = ["model=student", "distill=none", *SMALL]
# a value only the data can judge: a trial's validation carve that leaves training one class
ONE_CLASS = 0.999


def _spec(tmp_path, name: str = "tiny", **extra) -> str:
    spec = {"study_name": name, "metric": "val/f1_best", "direction": "maximize",
            "overrides": STUDY_OVERRIDES,
            "params": {"model.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _trials(tmp_path, name: str = "tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'out' / name}.db").get_trials()


def _sweep_args(tmp_path, name: str = "tiny") -> list[str]:
    # options first and last, overrides in between and after: any order works. Trials of 60 epochs (a
    # few seconds each): at one epoch a trial took 0.4 s, so on CI one worker ran all 4 before the other
    # had started, and a poll missed the moment when one trial had finished and another was running.
    return [_spec(tmp_path, name), "--n-trials", "4", "trainer.limit_val_batches=1", "--workers", "2",
            "--out", str(tmp_path / "out"), "--heartbeat", "1", "data.batch_size=128",
            "trainer.min_epochs=60", "trainer.max_epochs=60"]


@pytest.mark.slow
def test_two_workers_finish_a_four_trial_study(tmp_path):
    proc = run_cli("mstr.sweep", _sweep_args(tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _trials(tmp_path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({t.user_attrs["worker"].split("@")[0] for t in trials}) == 2  # both workers ran trials
    assert "study tiny: 4 complete; best val/f1_best" in proc.stdout
    for trial in trials:
        run_dir = tmp_path / "out" / "tiny" / f"trial{trial.number:04d}"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["val/f1_best"] == pytest.approx(trial.value)
        assert not any(k.startswith("test/") for k in metrics)  # trials never score the test sets
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        assert config["model"]["optim"]["lr"] == pytest.approx(trial.params["model.optim.lr"])
        assert config["data"]["batch_size"] == 128 and config["trainer"]["limit_val_batches"] == 1
        assert config["group"] == "tiny"


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_the_full_count(tmp_path):
    args = _sweep_args(tmp_path)
    (tmp_path / "logs").mkdir()
    stderr = tmp_path / "sweep.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mstr.sweep", *args], cwd=tmp_path,
                                env=cli_env(tmp_path / "logs"), stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:  # the first trials have ended, and another one is under way
            time.sleep(0.5)
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended (exit {proc.returncode}) before it could be killed: "
                            f"{stderr.read_text()[-3000:]}")
            # Read the study only once the sweep has made it (its first trial's dir exists): opening a
            # SQLite URL creates the schema, and two processes creating it at once can break the sweep's.
            if not (tmp_path / "out" / "tiny").exists():
                continue
            trials = _trials(tmp_path)
            if (any(t.state == TrialState.COMPLETE for t in trials)
                    and any(t.state == TrialState.RUNNING and t.params for t in trials)):
                break
        else:
            pytest.fail(f"the sweep never had a trial running after a finished one: {stderr.read_text()[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers die mid-trial, as on a crash
        proc.wait()
    killed = [t for t in _trials(tmp_path) if t.state == TrialState.RUNNING]  # some with parameters drawn
    assert killed and len(_trials(tmp_path)) < 4 + len(killed)

    proc = run_cli("mstr.sweep", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _trials(tmp_path)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    stale = [t for t in trials if t.state == TrialState.FAIL]
    assert sorted(t.number for t in stale) == sorted(t.number for t in killed)  # failed, without an error
    assert not any("error" in t.user_attrs for t in stale)
    for dead in stale:  # each ran again, with the parameters it had drawn
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == dead.number)
        assert retry.state == TrialState.COMPLETE and dead.params.items() <= retry.params.items()
    assert any(dead.params for dead in stale)


@pytest.mark.slow  # waits out Optuna's heartbeat grace period, 5 s
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() stands in for a worker
def test_a_trial_whose_worker_died_before_its_first_heartbeat_runs_again(tmp_path):
    """Optuna finds a dead trial by its late heartbeat; one killed before its first has none, and
    the study must not wait on it for ever (CI hung so on a slow machine)."""
    import threading

    from mstr.sweep import open_study, work

    spec = {"study_name": "silent", "direction": "maximize"}
    url, lock = f"sqlite:///{tmp_path / 'silent.db'}", tmp_path / "silent.lock"
    dead = open_study(spec, url, heartbeat=1, lock_path=lock).ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    time.sleep(3.5)  # past the grace period of 3 heartbeats

    study = open_study(spec, url, heartbeat=1, lock_path=lock)
    resumed = threading.Thread(target=work, args=(study, lambda trial: trial.suggest_float("x", 0, 1), 1, 1, lock),
                               daemon=True)
    resumed.start()
    resumed.join(timeout=120)
    assert not resumed.is_alive(), "the sweep waits on a trial whose worker is gone"
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].system_attrs["failed_trial"] == dead.number and trials[1].params == dead.params
    assert "error" not in trials[0].user_attrs  # failed by the kill, so it does not count toward the total


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path):
    from mstr.sweep import main

    spec = _spec(tmp_path, "failing", sampler={"name": "GridSampler",
                                               "search_space": {"data.val_fraction": [ONE_CLASS, 0.15]}},
                 params={"data.val_fraction": {"type": "categorical", "choices": [ONE_CLASS, 0.15]}})
    assert main([spec, "--n-trials", "2", "--out", str(tmp_path / "out")]) == 0
    trials = {t.params["data.val_fraction"]: t for t in _trials(tmp_path, "failing")}
    assert trials[0.15].state == TrialState.COMPLETE
    assert trials[ONE_CLASS].state == TrialState.FAIL
    assert "only one class (['benign']) in the training split" in trials[ONE_CLASS].user_attrs["error"]


def test_hopeless_trials_are_pruned_during_training(tmp_path):
    from mstr.sweep import main

    # every value is below the threshold: the pruner stops each trial at its first validation epoch
    spec = _spec(tmp_path, "pruned", pruner={"name": "ThresholdPruner", "lower": 1.5},
                 overrides=[*STUDY_OVERRIDES, "trainer.max_epochs=3"])
    assert main([spec, "--n-trials", "2", "--out", str(tmp_path / "out")]) == 0
    trials = _trials(tmp_path, "pruned")
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2  # pruned trials count toward the total
    assert all(list(t.intermediate_values) == [0] for t in trials)  # reported once, at epoch 0, then stopped
    assert not any((tmp_path / "out" / "pruned" / f"trial{t.number:04d}" / "metrics.json").exists() for t in trials)
    # compare says so (it listed them as unfinished, like a killed trial or one still running)
    from mstr.compare import compare

    statuses = [line.split("|")[-2].strip() for line in compare([tmp_path / "out" / "pruned"])["table"].splitlines()[2:]]
    assert len(statuses) == 2 and all(s.startswith("pruned: pruned at epoch 0: val/f1_best=") for s in statuses)


@pytest.mark.slow
def test_an_in_memory_study_prunes_too(tmp_path, capsys):
    """--storage none: the trials had no pruning callback (it found its study through the database
    URL), so the spec's pruner never stopped a trial."""
    from mstr.sweep import main

    spec = _spec(tmp_path, "pruned", pruner={"name": "ThresholdPruner", "lower": 1.5},
                 overrides=[*STUDY_OVERRIDES, "trainer.max_epochs=3"])
    assert main([spec, "--n-trials", "1", "--storage", "none", "--out", str(tmp_path / "out")]) == 0
    assert "study pruned: 1 pruned; no trial completed" in capsys.readouterr().out
    trial = tmp_path / "out" / "pruned" / "trial0000"
    assert (trial / "pruned.json").is_file() and not (trial / "metrics.json").exists()


@pytest.mark.slow
def test_a_distilled_trial_reports_its_students_epochs_not_its_teachers(tmp_path):
    """The trial's pruning callback watches the student: the teacher trained on the way (here 3 epochs,
    the student 2) reports nothing to the trial, so the pruner judges the student's own epochs."""
    from mstr.jobs.loggers import epoch_history
    from mstr.sweep import main

    spec = _spec(tmp_path, "distilled", pruner={"name": "NopPruner"},
                 overrides=["model=student", "distill=logits", *SMALL, "trainer.max_epochs=2",
                            "distill.teacher_max_epochs=3", f"paths.teacher_cache_dir={tmp_path / 'teachers'}"])
    assert main([spec, "--n-trials", "1", "--out", str(tmp_path / "out")]) == 0
    (trial,) = _trials(tmp_path, "distilled")
    run_dir = tmp_path / "out" / "distilled" / "trial0000"
    student = epoch_history(run_dir / "csv" / "metrics.csv")["val/f1"]
    teacher = epoch_history(run_dir / "teacher" / "csv" / "metrics.csv")["val/f1"]
    assert "teacher: none given" in (run_dir / "train.log").read_text()  # the trial's log, as a run dir has
    # the study's metric, val/f1_best: the best val/f1 so far, after each of the student's epochs
    assert len(teacher) == 3 and trial.intermediate_values == pytest.approx(student.cummax().to_dict())


@pytest.mark.slow
def test_a_study_resumes_only_with_its_own_settings_and_trial_dirs(tmp_path, capsys):
    from mstr.sweep import main

    out = ["--out", str(tmp_path / "out")]
    assert main([_spec(tmp_path), "--n-trials", "1", *out]) == 0
    capsys.readouterr()
    for args, messages in (
            # another fixed override: another study, never mixed into this one's results
            (["--n-trials", "2", "data.batch_size=128", *out], ("study tiny in sqlite:///", "was started with")),
            # in memory, a new study: trial0000 is the other study's
            (["--n-trials", "1", "--storage", "none", *out], ("tiny/trial0000: trial dirs of another study",))):
        with pytest.raises(SystemExit) as stop:
            main([_spec(tmp_path), *args])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and all(m in err for m in messages), err
        assert len(err.strip().splitlines()) == 1, err
    assert len(_trials(tmp_path)) == 1  # nothing ran
    assert main([_spec(tmp_path), "--n-trials", "2", *out]) == 0  # the same settings resume it
    assert len(_trials(tmp_path)) == 2


def test_a_study_resumes_with_its_overrides_in_any_order(tmp_path):
    """Order is free on the command line: the same overrides in another order resume the study;
    another value of one is another study."""
    from mstr.errors import ConfigError
    from mstr.sweep import check_study

    study = optuna.create_study(direction="maximize")  # the spec's default direction, as open_study makes it
    spec = {"study_name": "tiny", "overrides": ["model=student"], "params": {}, "metric": "val/f1_best"}
    check_study(study, spec, ["data.batch_size=128", "seed=1"], tmp_path, None)
    check_study(study, spec, ["seed=1", "data.batch_size=128"], tmp_path, None)
    check_study(study, {**spec, "overrides": []}, ["seed=1", "model=student", "data.batch_size=128"], tmp_path, None)
    for extra in (["seed=2", "data.batch_size=128"], ["seed=1", "data.batch_size=128", "seed=2"]):
        with pytest.raises(ConfigError, match="was started with overrides"):
            check_study(study, spec, extra, tmp_path, None)


def test_a_sweep_checks_its_overrides_before_any_trial(tmp_path, capsys):
    from mstr.sweep import main

    for bad, message in ((["trainer=ddp_cpu"], "use --workers"), (["data.window=0"], "data.window")):
        with pytest.raises(SystemExit) as exit_info:
            main([_spec(tmp_path), "--out", str(tmp_path / "out"), *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # no study, no trial


def test_several_workers_need_a_database(tmp_path, capsys):
    from mstr.sweep import main

    with pytest.raises(SystemExit) as exit_info:
        main([_spec(tmp_path), "--workers", "2", "--storage", "none"])
    assert exit_info.value.code == 2 and "needs a database" in capsys.readouterr().err


def test_wandb_sweep_spec_runs_mstr_train_with_hydra_overrides(tmp_path):
    """Parse the spec, build the command a W&B agent would run (wandb's own helpers, then the agent's
    macro expansion), and dry-run it: its values are valid and land in the composed config."""
    import math

    from wandb.sdk.launch.sweeps import utils as sweep_utils

    from _cli import REPO
    from mstr.preflight import preflight

    spec = yaml.safe_load((REPO / "sweeps" / "distill_student.wandb.yaml").read_text())
    assert spec["metric"]["name"].startswith("val/")  # selection on validation only
    sampled = {}
    for name, p in spec["parameters"].items():  # one value of each parameter, as the agent sends it
        sampled[name] = p["values"][-1] if "values" in p else math.sqrt(p["min"] * p["max"])
    variables = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in sampled.items()}})
    variables.update(env=["/usr/bin/env"], interpreter=[sys.executable], program=[spec["program"]])
    command = []
    for chunk in sweep_utils.create_sweep_command(list(spec["command"])):
        command += variables.get(chunk[2:-1], []) if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    assert command[:4] == ["/usr/bin/env", sys.executable, "-m", "mstr.train"]
    overrides = command[4:]
    cfg = preflight(overrides, "train")  # every value valid, as a run would check it first
    assert cfg.logger.wandb.offline is False and cfg.test is False
    proc = subprocess.run([*command, "--cfg", "job"], cwd=tmp_path, env=cli_env(tmp_path / "logs"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    job = yaml.safe_load(proc.stdout)
    for name, value in sampled.items():
        node = job
        for part in name.split("."):
            node = node[part]
        assert node == pytest.approx(value) if isinstance(value, float) else node == value


def test_a_sweep_refuses_a_searched_key_that_does_not_exist(tmp_path, capsys):
    from mstr.sweep import main

    spec = _spec(tmp_path, "typo", params={"distill.temprature": {"type": "float", "low": 1.0, "high": 4.0}})
    with pytest.raises(SystemExit) as exit_info:
        main([spec, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "temprature" in capsys.readouterr().err


@pytest.mark.slow  # processes of the entry points, 10-14 s
def test_sweeps_started_together_on_a_new_database_all_open_it(tmp_path):
    # Without the study's lock, two processes creating the schema at once fail about half the time
    # (a table "already exists"); four at once nearly always.
    code = ("import sys; from pathlib import Path; from mstr.sweep import open_study; "
            "study = open_study({'study_name': 'together'}, sys.argv[1], 1, Path(sys.argv[2])); "
            "print(study.study_name)")
    url, lock = f"sqlite:///{tmp_path / 'together.db'}", str(tmp_path / "together.lock")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, lock], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err[-800:] for _, err in results]
    assert [out.strip() for out, _ in results] == ["together"] * 4
    assert len(optuna.get_all_study_names(url)) == 1


@pytest.mark.parametrize("change, options, message", [
    ("{bad", [], "not a YAML sweep spec"),
    ({"direction": "upward"}, [], "direction='upward': must be maximize or minimize"),
    ({"params": {"model.optim.lr": {"type": "float", "low": 1e-2, "high": 1e-3}}}, [],
     "params.model.optim.lr: `low <= high` must hold"),  # every trial would fail
    (None, ["--storage", "bogus://x"], "storage 'bogus://x': Can't load plugin"),
    (None, ["--n-trials", "0"], "--n-trials=0: must be an integer >= 1"),  # not the spec's 20
    ({"metric": "val/f1_bst"}, [], "metric='val/f1_bst': not a validation metric a run reports; one of "
                                   "['val/acc_best', 'val/f1_best', 'val/auroc_best', 'val/unseen_type_recall']; "
                                   "did you mean val/f1_best?"),  # else every trial trains, then fails
    ({"pruner": {"name": "MedianPruner", "n_startup": 4}}, [],  # not a traceback after the study is made
     "pruner: MedianPruner.__init__() got an unexpected keyword argument 'n_startup'"),
    ({"sampler": {"seed": 3}}, [], "sampler: missing key 'name'"),
    ({"seed": "abc"}, [], "seed='abc': must be an integer >= 0"),
    ({"overrides": "distill=none"}, [], "overrides='distill=none': must be a list of key=value strings"),
    # each end of a range and each choice is checked, not only low and the first choice
    ({"overrides": ["model=student", "distill=logits"], "params": {"distill.alpha": {"type": "float", "low": 0.1, "high": 5.0}}},
     [], "distill.alpha=5.0: must be a number in [0, 1]"),
    ({"params": {"data.sampler": {"type": "categorical", "choices": ["none", "sqrtt"]}}}, [], "data.sampler='sqrtt': must be"),
    # a float range with integer ends draws floats (10.58): checked as 4.0, not as the 4 written (every trial failed)
    ({"params": {"data.window": {"type": "float", "low": 4, "high": 16}}}, [], "data.window=4.0: must be an integer"),
    # a fixed value of a searched key would be replaced by every trial's sampled one, without a word
    (None, ["model.optim.lr=0.01"], "model.optim.lr=0.01 (the command line): the spec searches model.optim.lr"),
    ({"overrides": [*STUDY_OVERRIDES, "model.optim.lr=0.01"]}, [], "(the spec's overrides): the spec searches"),
    # trials are composed in the sweep's process, not launched by Hydra: a launcher or run dir was ignored
    (None, ["hydra/launcher=submitit_local"], "hydra/launcher=submitit_local (the command line): a sweep's trials "
                                              "are not Hydra jobs, so hydra settings do nothing"),
    # keys every trial sets itself: the value given was replaced without a word
    (None, ["test=true"], "test=true (the command line): a sweep's trials never score the test set"),
    ({"overrides": [*STUDY_OVERRIDES, "paths.output_dir=elsewhere"]}, [],
     "paths.output_dir=elsewhere (the spec's overrides): each trial runs in its own dir under --out"),
    ({"n_trail": 20}, [], "'n_trail': not a sweep spec key; did you mean n_trials? (keys: study_name, "),  # not ignored
    # reported only with unseen types held out in validation: every trial trained, then failed for want of it
    ({"metric": "val/unseen_type_recall"}, [], "metric val/unseen_type_recall: runs report it only with "
                                                "data.val_unseen_types > 0"),
    # a misspelt key of a searched parameter was ignored (a linear search where log was meant); a range
    # end that is not a number, and choices that are not a list, were Optuna's riddles or letters searched
    ({"params": {"model.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "lg": True}}}, [],
     "params.model.optim.lr.lg: not a key of a float parameter; did you mean log? (keys: type, low, high, log)"),
    ({"params": {"model.optim.lr": {"type": "float", "low": "small", "high": 1e-2}}}, [],
     "params.model.optim.lr.low='small': must be a number"),
    ({"params": {"model.backbone.token_dim": {"type": "int", "low": 4.5, "high": 16}}}, [],
     "params.model.backbone.token_dim.low=4.5: must be an integer"),
    ({"params": {"data.sampler": {"type": "categorical", "choices": "none"}}}, [],
     "params.data.sampler.choices='none': must be a list"),
    # the study's dir and database are named after it: a number was a TypeError traceback, a path
    # put the trials outside --out
    ({"study_name": 2024}, [], "study_name=2024: must be a name (text without '/')"),
    ({"study_name": "../elsewhere"}, [], "study_name='../elsewhere': must be a name"),
])
def test_a_bad_spec_or_option_stops_the_sweep_before_any_trial(tmp_path, capsys, change, options, message):
    from mstr.sweep import main

    spec = _spec(tmp_path, **change) if isinstance(change, dict) else _spec(tmp_path)
    if isinstance(change, str):
        (tmp_path / "tiny.yaml").write_text(change)
    with pytest.raises(SystemExit) as stop:
        main([spec, *options, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # no study, no trial


def test_a_study_whose_every_trial_failed_on_its_data_exits_2(tmp_path, capsys):
    """... and Optuna's own line about the failed trial comes without a traceback: mstr logged the cause."""
    import logging

    from mstr.sweep import CauseLoggedAlready, main

    class Records(logging.Handler):
        seen: list = []

        def emit(self, record):
            self.seen.append(record)

    records = Records()
    optuna_failures = logging.getLogger(CauseLoggedAlready.LOGGER)
    optuna_failures.addHandler(records)
    spec = _spec(tmp_path, "hopeless", params={"data.val_fraction": {"type": "categorical", "choices": [ONE_CLASS]}})
    try:
        assert main([spec, "--n-trials", "1", "--out", str(tmp_path / "out")]) == 2
    finally:
        optuna_failures.removeHandler(records)
    failed = [r for r in records.seen if "Trial 0 failed with parameters" in r.getMessage()]
    assert len(failed) == 1 and all(r.exc_info is None for r in records.seen)
    captured = capsys.readouterr()
    assert "study hopeless: 1 fail; no trial completed" in captured.out
    assert captured.err.strip().splitlines()[-1].startswith(
        "error: study hopeless: no trial completed; 1 failed, trial 0: DataError: synthetic[train]: only one class")


def test_a_failed_trial_says_so_in_its_dir_and_compare_lists_it_as_failed(tmp_path, capsys):
    """A failed trial writes job_error.json as a failed multirun job does: compare lists it as failed
    with its error, not as unfinished, and a sweep whose every trial failed is still a table."""
    from mstr.compare import main as compare_main
    from mstr.sweep import main

    spec = _spec(tmp_path, "hopeless", params={"data.val_fraction": {"type": "categorical", "choices": [ONE_CLASS]}})
    assert main([spec, "--n-trials", "1", "--out", str(tmp_path / "out")]) == 2
    record = json.loads((tmp_path / "out" / "hopeless" / "trial0000" / "job_error.json").read_text())
    assert record["user_error"] is True and record["error"].startswith("synthetic[train]: only one class")
    capsys.readouterr()
    assert compare_main([str(tmp_path / "out" / "hopeless")]) == 0
    (row,) = (tmp_path / "out" / "hopeless" / "compare" / "runs.md").read_text().splitlines()[2:]
    assert row.startswith("| trial0000 |") and "failed: synthetic[train]: only one class" in row


@pytest.mark.parametrize("saved", [True, False])  # False: Ctrl-C before the trial's training began
def test_an_interrupted_sweep_ends_with_one_line(tmp_path, capsys, monkeypatch, saved):
    """Ctrl-C during a trial: no Optuna traceback nor "failed with value None", only the line saying what
    was saved and how to resume, and exit 130; the trial is queued again."""
    import logging
    import signal

    import mstr.jobs.train
    from mstr.errors import Interrupted
    from mstr.sweep import CauseLoggedAlready, main

    def interrupted(cfg):
        if not saved:
            raise KeyboardInterrupt
        raise Interrupted(signal.SIGINT, f"{cfg.paths.output_dir}/checkpoints/last.ckpt", saved=True)

    class Records(logging.Handler):
        seen: list = []

        def emit(self, record):
            self.seen.append(record)

    monkeypatch.setattr(mstr.jobs.train, "run", interrupted)
    records = Records()
    optuna_failures = logging.getLogger(CauseLoggedAlready.LOGGER)
    optuna_failures.addHandler(records)
    try:
        with pytest.raises(SystemExit) as stop:
            main([_spec(tmp_path), "--n-trials", "1", "--out", str(tmp_path / "out")])
    finally:
        optuna_failures.removeHandler(records)
    assert stop.value.code == 130 and records.seen == []
    err = capsys.readouterr().err
    what = f"saved {tmp_path / 'out' / 'tiny' / 'trial0000'}/checkpoints/last.ckpt" if saved else "no checkpoint"
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(f"interrupted by SIGINT: {what}")
    assert [t.state for t in _trials(tmp_path)] == [TrialState.FAIL, TrialState.WAITING]
    assert "resume with: python -m mstr.sweep" in err
    # an in-memory study: nothing a later command could resume, so no command is offered
    with pytest.raises(SystemExit) as stop:
        main([_spec(tmp_path), "--n-trials", "1", "--out", str(tmp_path / "mem"), "--storage", "none"])
    err = capsys.readouterr().err
    assert stop.value.code == 130 and err.strip().splitlines()[-1].startswith("interrupted by SIGINT: ")
    assert "resume with" not in err


class SigintAt(pytorch_lightning.Callback):
    """Ctrl-C at a given training step, as a user would press it."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_trial_is_continued_by_the_same_command(tmp_path, monkeypatch, capsys):
    """SIGINT mid-trial: the trial is queued again with its parameters, and the next run of the same
    command continues it in its dir from the last.ckpt it saved, not from scratch with new parameters."""
    import mstr.jobs.train
    from mstr.sweep import main

    real_run = mstr.jobs.train.run

    def interrupted_once(cfg):
        from omegaconf import open_dict

        with open_dict(cfg):
            cfg.callbacks.sigint = {"_target_": f"{__name__}.SigintAt", "step": 2}
        monkeypatch.setattr(mstr.jobs.train, "run", real_run)  # the next run of the command: as it is
        return real_run(cfg)

    monkeypatch.setattr(mstr.jobs.train, "run", interrupted_once)
    args = [_spec(tmp_path, pruner={"name": "NopPruner"}, overrides=[*STUDY_OVERRIDES, "trainer.max_epochs=2"]),
            "--n-trials", "1", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 130
    stopped, queued = _trials(tmp_path)
    assert stopped.state == TrialState.FAIL and "error" not in stopped.user_attrs
    assert queued.state == TrialState.WAITING and queued.params == stopped.params
    run_dir = tmp_path / "out" / "tiny" / "trial0000"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    assert main(args) == 0
    stopped, rerun = _trials(tmp_path)
    assert rerun.state == TrialState.COMPLETE and rerun.params == stopped.params
    assert rerun.system_attrs["failed_trial"] == stopped.number
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / "metrics.json").read_text())["val/f1_best"] == pytest.approx(rerun.value)
    assert not (tmp_path / "out" / "tiny" / "trial0001").exists()  # the rerun is trial0000's, in its dir
    # the summary names the best trial's dir: its number (1) has no trial0001
    assert f"(trial 1, {run_dir}): model.optim.lr=" in capsys.readouterr().out


def _run_dir(root, name: str, config: str, metrics: str | None = None):
    (root / name / ".hydra").mkdir(parents=True)
    (root / name / ".hydra" / "config.yaml").write_text(config)
    if metrics is not None:
        (root / name / "metrics.json").write_text(metrics)


def test_compare_lists_or_skips_runs_it_cannot_read(tmp_path, capsys):
    """A trial dir with a broken metrics.json is listed as unreadable, one with a broken config is
    skipped, each with a warning naming the file; a NaN metric is shown as NaN."""
    from mstr.compare import main

    _run_dir(tmp_path, "good", "lr: 0.1\n", '{"val/f1_best": 0.7}')
    _run_dir(tmp_path, "nan", "lr: 0.2\n", '{"val/f1_best": NaN}')
    _run_dir(tmp_path, "torn", "lr: 0.3\n", "{bad")
    _run_dir(tmp_path, "noyaml", "lr: [1\n", '{"val/f1_best": 0.9}')
    assert main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert f"warning: {tmp_path / 'torn' / 'metrics.json'}: cannot be parsed" in captured.err
    assert f"warning: {tmp_path / 'noyaml' / '.hydra' / 'config.yaml'}: cannot be parsed" in captured.err
    rows = [line for line in (tmp_path / "compare" / "runs.md").read_text().splitlines()[2:]]
    assert [r.split("|")[1].strip() for r in rows] == ["good", "nan", "torn"]
    assert "| nan |" in rows[1] and "unreadable: " in rows[2]


def test_compare_piped_into_a_reader_that_leaves_ends_quietly(tmp_path):
    """`python -m mstr.compare <dir> | head -3`: head leaves, the next print met a closed pipe, and a
    BrokenPipeError traceback followed the table."""
    import os

    _run_dir(tmp_path, "a", "lr: 0.1\n", '{"val/f1_best": 0.7}')
    _run_dir(tmp_path, "b", "lr: 0.2\n", '{"val/f1_best": 0.9}')
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first line
    proc = subprocess.run([sys.executable, "-m", "mstr.compare", str(tmp_path)], stdout=write, stderr=subprocess.PIPE,
                          text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 0 and "Error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "compare" / "runs.md").is_file()  # written before the table was printed

def test_compare_stops_with_one_line_on_unreadable_runs_or_an_unwritable_out(tmp_path, capsys):
    from mstr.compare import main

    _run_dir(tmp_path / "a", "run", "lr: [1\n", '{"val/f1_best": 0.9}')
    _run_dir(tmp_path / "b", "run", "lr: 1\n", '{"val/f1_best": 0.9}')
    (tmp_path / "file").write_text("")
    for args, message in (([str(tmp_path / "a")], f"{tmp_path / 'a' / 'run' / '.hydra' / 'config.yaml'}: cannot be parsed"),
                          ([str(tmp_path / "b"), "--out", str(tmp_path / "file")],
                           f"{tmp_path / 'file' / 'compare'}: cannot write there")):
        with pytest.raises(SystemExit) as stop:
            main(args)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_compare_of_run_dirs_given_one_by_one(tmp_path, capsys):
    """`compare run_a run_b`: runs named from their common folder, where the outputs go; settings shown as
    set (2 and 4.0 as 2 and 4) with interpolations resolved; a group chosen differently (distill=none has
    no temperature) is one varied key, not every key of the group."""
    from mstr.compare import main

    distilled = ("trainer: {max_epochs: 5}\ndistill: {method: logits, temperature: 4.0, alpha: 0.5, "
                 "teacher_max_epochs: '${trainer.max_epochs}'}\n")
    _run_dir(tmp_path / "runs", "a", distilled, '{"val/f1_best": 0.8}')
    _run_dir(tmp_path / "runs", "b", distilled.replace("4.0", "2"), '{"val/f1_best": 0.9}')
    _run_dir(tmp_path / "runs", "c", "trainer: {max_epochs: 5}\ndistill: {method: none}\n", '{"val/f1_best": 0.7}')
    runs = tmp_path / "runs"
    assert main([str(runs / "a"), str(runs / "b"), str(runs / "c")]) == 0
    capsys.readouterr()
    lines = (runs / "compare" / "runs.md").read_text().splitlines()
    assert lines[0].split("|")[1:-1] == [" run ", " val/f1_best ", " distill.method ", " distill.temperature ", " status "]
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["b", "a", "c"]
    assert [line.split("|")[4].strip() for line in lines[2:]] == ["2", "4", ""]
    from mstr.compare import read_run

    assert read_run(runs / "a")["config"]["distill.teacher_max_epochs"] == 5
    assert not (runs / "compare" / "val_f1_per_epoch.png").exists()  # no run kept a csv history
    # set by hand in one run, by interpolation in the others: varied, in the table as in the plots
    _run_dir(runs, "d", distilled.replace("'${trainer.max_epochs}'", "2") + "source: {_target_: other.load}\n",
             '{"val/f1_best": 0.85}')
    (runs / "a" / ".hydra" / "config.yaml").write_text(distilled + "source: {_target_: mstr.load}\n")
    assert main([str(runs / "a"), str(runs / "b"), str(runs / "c"), str(runs / "d")]) == 0
    header = (runs / "compare" / "runs.md").read_text().splitlines()[0].split("|")[1:-1]
    assert " distill.teacher_max_epochs " in header and " source._target_ " not in header  # follows a group choice
    assert (runs / "compare" / "val_f1_best_vs_distill.teacher_max_epochs.png").is_file()


def test_compare_gives_each_peer_of_a_baselines_dir_its_row_beside_the_networks(tmp_path, capsys):
    """`mstr.baselines` writes `<model>/test/f1`, ...: as one row, a finished job showed no result at all."""
    from mstr.compare import main

    _run_dir(tmp_path, "net", "task_name: train\n", '{"test/f1": 0.8, "test/acc": 0.85}')
    _run_dir(tmp_path, "peers", "task_name: baselines\nbaselines: {models: [majority, lightgbm]}\n",
             '{"majority/test/f1": 0.1, "majority/test/acc": 0.5, "lightgbm/test/f1": 0.9, "lightgbm/test/acc": 0.95, '
             '"data/window": 1}')
    assert main([str(tmp_path), "--metric", "test/f1"]) == 0
    capsys.readouterr()
    rows = [line.split("|")[1:-1] for line in (tmp_path / "compare" / "runs.md").read_text().splitlines()]
    assert [cell.strip() for cell in rows[0]] == ["run", "test/f1", "baselines.models", "task_name", "test/acc", "status"]
    assert [[cell.strip() for cell in row] for row in rows[2:]] == [
        ["peers/lightgbm", "0.9000", "lightgbm", "baselines", "0.9500", "finished"],
        ["net", "0.8000", "", "train", "0.8500", "finished"],
        ["peers/majority", "0.1000", "majority", "baselines", "0.5000", "finished"]]
    (tmp_path / "peers" / ".hydra" / "config.yaml").write_text("task_name: baselines\nbaselines: {models: majority}\n")
    assert main([str(tmp_path / "peers"), "--metric", "test/f1"]) == 0  # `baselines.models=majority`: one peer
    assert "| majority | 0.1000 |" in (tmp_path / "peers" / "compare" / "runs.md").read_text()


def test_compare_says_which_dir_holds_no_run_and_which_teacher_metric_no_run_has(tmp_path, capsys):
    """A dir given beside real ones that holds no run was skipped without a word (a mistyped path), and a
    --teacher-metric no distilled run has silently drew no teacher plot."""
    from mstr.compare import main

    _run_dir(tmp_path / "runs", "a", "lr: 0.1\n", '{"val/f1_best": 0.8, "test/f1": 0.8, "teacher/test/f1": 0.9}')
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "runs"), str(tmp_path / "empty")]) == 0
    captured = capsys.readouterr()
    assert f"warning: {tmp_path / 'empty'}: no runs there" in captured.err
    assert "\n1 run; varied: nothing" in captured.out
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "runs"), "--teacher-metric", "test/bogus"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: --teacher-metric test/bogus: no distilled run has "
                                                   "teacher/test/bogus in metrics.json")


def test_compare_draws_the_metric_per_epoch_of_runs_with_a_history(tmp_path, capsys):
    from mstr.compare import compare

    for name, f1 in (("a", [0.5, 0.7, 0.8]), ("b", [0.6, 0.9])):
        _run_dir(tmp_path, name, "lr: 0.1\n" if name == "a" else "lr: 0.2\n", f'{{"val/f1_best": {max(f1)}}}')
        (tmp_path / name / "csv").mkdir()
        rows = [f"{epoch},{10 * (epoch + 1)},{value}," for epoch, value in enumerate(f1)]
        rows += [f"{epoch},{10 * (epoch + 1)},,0.{9 - epoch}" for epoch in range(len(f1))]  # other calls' rows
        (tmp_path / name / "csv" / "metrics.csv").write_text("epoch,step,val/f1,train/loss_epoch\n" + "\n".join(rows))
    result = compare([tmp_path])
    assert tmp_path / "compare" / "val_f1_per_epoch.png" in result["files"]
    assert (tmp_path / "compare" / "val_f1_per_epoch.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_run_that_fails_says_so_in_its_dir_and_compare_lists_it_as_failed(tmp_path, capsys):
    """A data error after Hydra made the run dir: one line and exit 2 as ever, and `job_error.json` in
    the dir, so that compare shows the run as failed with its error, not as unfinished."""
    from mstr.compare import main

    empty = tmp_path / "flows.csv"
    empty.write_text("src,dst,bytes,label\n")
    run_dir = tmp_path / "runs" / "bad"
    proc = run_cli("mstr.train", ["data=flows", f"data.path={empty}", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == f"error: {empty}: has a header but no data rows"
    assert json.loads((run_dir / "job_error.json").read_text()) == {"error": f"{empty}: has a header but no data rows",
                                                                   "user_error": True}
    _run_dir(tmp_path / "runs", "good", "lr: 0.1\n", '{"val/f1_best": 0.7}')
    assert main([str(tmp_path / "runs")]) == 0
    rows = (tmp_path / "runs" / "compare" / "runs.md").read_text().splitlines()[2:]
    assert rows[-1].startswith("| bad |") and f"failed: {empty}: has a header but no data rows" in rows[-1]


def test_a_retry_whose_worker_died_before_claiming_it_is_failed_not_waited_on(tmp_path):
    """Optuna's retry of a stale trial copies the failed trial's attributes, its worker's claim among them:
    a worker that died after taking the retry, before its first heartbeat, left a trial that looked
    claimed, that Optuna never finds stale (no heartbeat), and the study waited on it for ever."""
    import time

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    from mstr.sweep import claim, fail_unclaimed_trials

    storage = RDBStorage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=60,
                         failed_trial_callback=RetryHeartbeatStaleTrialCallback())
    study = optuna.create_study(storage=storage, study_name="s")
    with pytest.warns(UserWarning, match="Heartbeat"):
        earlier, retry = study.ask(), study.ask()
    earlier.set_user_attr("worker", claim(earlier.number))  # its own claim: Optuna's to find stale
    retry.set_user_attr("worker", claim(earlier.number))    # copied from the trial it retries
    time.sleep(0.2)
    fail_unclaimed_trials(study, grace=0.1)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[earlier.number] == TrialState.RUNNING and states[retry.number] == TrialState.FAIL
    assert TrialState.WAITING in states.values()  # queued again, with the same parameters


def test_compare_of_a_distilled_sweep_without_test_scores_draws_no_teacher_plot(tmp_path, capsys):
    """Sweep trials run test=false: a distilled trial has teacher/model/params but no teacher/test/f1. The
    README's `mstr.compare <sweep dir>` was refused (exit 2) for a --teacher-metric never given, after
    writing its tables; a --teacher-metric given that no run has is refused before anything is written."""
    from mstr.compare import main

    for name, f1 in (("trial0000", 0.8), ("trial0001", 0.9)):
        _run_dir(tmp_path / "study", name, f"distill: {{method: logits, alpha: {f1}}}\n",
                 f'{{"val/f1_best": {f1}, "teacher/model/params": 100, "teacher/source": "x"}}')
    assert main([str(tmp_path / "study")]) == 0
    assert "| trial0001 | 0.9000 |" in capsys.readouterr().out
    assert not (tmp_path / "study" / "compare" / "teacher_vs_student.png").exists()
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "study"), "--teacher-metric", "test/acc", "--out", str(tmp_path / "elsewhere")])
    assert stop.value.code == 2 and "--teacher-metric test/acc: no distilled run" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def test_a_spec_range_written_1e_4_is_read_as_a_number(tmp_path):
    """YAML 1.1 reads 1e-4 (no dot) as text: the spec's own example range (low: 1e-4) was refused as
    "`low <= high` must hold, but got (low='1e-4', high='1e-2')"."""
    from mstr.sweep import load_spec

    path = tmp_path / "sci.yaml"
    path.write_text("study_name: sci\nmetric: val/f1_best\n"
                    "params: {model.optim.lr: {type: float, low: 1e-4, high: 1e-2, log: true}, "
                    "model.backbone.token_dim: {type: int, low: 8, high: 1e2}}\n")
    params = load_spec(path)["params"]
    assert params["model.optim.lr"] == {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
    assert params["model.backbone.token_dim"]["high"] == 100 and isinstance(params["model.backbone.token_dim"]["high"], int)


def test_a_study_resumes_only_in_the_direction_it_was_started_with(tmp_path, capsys):
    """Optuna loads a stored study with its own direction: a spec changed to minimize went on maximizing
    (its best trial the highest) without a word."""
    from mstr.sweep import main

    (tmp_path / "out").mkdir()
    optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'out' / 'tiny'}.db", direction="maximize")
    with pytest.raises(SystemExit) as stop:
        main([_spec(tmp_path, direction="minimize"), "--n-trials", "1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "study tiny in sqlite:///" in err and "was started with direction maximize, " \
        "not minimize: give another --out" in err and len(err.strip().splitlines()) == 1, err
    assert _trials(tmp_path) == [] and not (tmp_path / "out" / "tiny").exists()


@pytest.mark.parametrize("storage, message", [
    ([], "storage 'sqlite:///{out}/tiny.db': cannot create {out} (File exists); give a writable --out folder (or --storage URL)"),
    (["--storage", "none"], "--out {out}: cannot create it (File exists); give a writable folder"),
])
def test_an_out_that_is_a_file_stops_the_sweep_with_one_line(tmp_path, capsys, storage, message):
    """--out naming a file (or a folder it cannot create) was a FileExistsError traceback, exit 1."""
    from mstr.sweep import main

    out = tmp_path / "taken"
    out.write_text("")
    with pytest.raises(SystemExit) as stop:
        main([_spec(tmp_path), "--out", str(out), *storage])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err == f"error: {message.format(out=out)}\n", err


def test_a_trials_wandb_group_is_the_study_unless_one_is_chosen(tmp_path):
    """README: runs are grouped by study, `group=<name>` to choose; a sweep's group= was replaced by the
    study's name in every trial."""
    from mstr.sweep import load_spec, trial_config

    spec = load_spec(Path(_spec(tmp_path)))
    study = optuna.create_study()
    for extra, group in (([], "tiny"), (["group=ablation-3"], "ablation-3")):
        cfg, _ = trial_config(spec, extra, study.ask(), tmp_path / "trial", None)
        assert cfg.group == group


def test_a_trials_config_holds_no_database_password(tmp_path):
    """The storage URL went into each trial's config whole (README's own postgresql://user:pass@...):
    saved in the trial dir's .hydra/config.yaml and logged to W&B with the rest of the config."""
    from omegaconf import OmegaConf

    from mstr.sweep import load_spec, trial_config

    spec = load_spec(Path(_spec(tmp_path)))
    cfg, _ = trial_config(spec, [], optuna.create_study().ask(), tmp_path / "trial", "postgresql://user:s3cret@db-host/mstr")
    assert cfg.callbacks.optuna_pruning.storage == "postgresql://user:***@db-host/mstr"
    assert "s3cret" not in OmegaConf.to_yaml(cfg)


def test_a_gpu_sweep_on_a_machine_without_one_stops_before_the_study(tmp_path, capsys, monkeypatch):
    """Each trial failed at once ("No supported gpu backend found") and counted toward --n-trials, so a
    later run on a GPU machine found the study done."""
    import torch

    from mstr.sweep import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        main([_spec(tmp_path), "trainer=gpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "trainer.accelerator=gpu: this machine has no usable GPU" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_metric_reported_only_after_training_warns_that_nothing_is_pruned(caplog):
    import logging

    from mstr.sweep import check_trials

    spec = {"study_name": "s", "metric": "val/unseen_type_recall", "overrides": ["data=nsl_kdd", "data.val_unseen_types=0.2"],
            "params": {"model.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}}
    with caplog.at_level(logging.WARNING, logger="mstr.sweep"):
        check_trials(spec, [])
        assert "is computed once, after training: the pruner gets no value" in caplog.text
        caplog.clear()
        check_trials({**spec, "pruner": {"name": "NopPruner"}}, [])
        check_trials({**spec, "metric": "val/f1_best"}, ["test=false"])  # what every trial sets: said, not refused
    assert "pruner" not in caplog.text
