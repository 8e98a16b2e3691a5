"""Benchmarks and searches on tiny settings: the tables and the shared, resumable study are real; bad
options stop each benchmark with one line before any work."""

import json
import subprocess
import sys

import optuna
import pytest
import yaml

from mstr.bench.__main__ import main as bench_main

TINY = ["data.source.n_flows=3000", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2"]


@pytest.mark.slow  # a whole benchmark or search
def test_distill_benchmark_prints_every_method_with_compression_columns(tmp_path, capsys):
    bench_main(["distill", "--datasets", "synthetic", "--seeds", "0", "--epochs", "1", "--teacher-epochs", "1",
                "--out", str(tmp_path), "--override", *TINY])
    table = (tmp_path / "distill.md").read_text()
    for row in ("teacher", "student_nokd", "student_logits", "student_features", "student_attention",
                "student_combined"):
        assert f"| {row} |" in table
    assert "latency ms" in table and table in capsys.readouterr().out
    # a distilled row carries the timings its training run measured (time/compression/...)
    cells = [c.strip() for c in next(l for l in table.splitlines() if "| student_logits |" in l).split("|")]
    latency, throughput = cells[8], cells[9]
    assert float(latency) > 0 and float(throughput.replace(",", "")) > 0
    assert len(list((tmp_path / "teachers").glob("*/teacher.ckpt"))) == 1  # one teacher for all methods


@pytest.mark.slow  # a whole benchmark or search
def test_accuracy_benchmark_reuses_runs_and_adds_peers(tmp_path):
    args = ["--datasets", "synthetic", "--seeds", "0", "--epochs", "1", "--teacher-epochs", "1",
            "--out", str(tmp_path), "--override", *TINY]
    bench_main(["accuracy", *args])
    before = {p: p.stat().st_mtime for p in tmp_path.glob("runs/synthetic/*/seed0*")}
    assert len(before) == 3  # student_nokd, student_logits, peers
    bench_main(["accuracy", *args])
    assert before == {p: p.stat().st_mtime for p in before}  # finished runs are reused, not retrained
    table = (tmp_path / "accuracy.md").read_text()
    for row in ("teacher (mstr)", "student, distilled (mstr)", "student, no KD (mstr)", "majority", "stump",
                "lightgbm", "xgboost", "random_forest", "logreg"):
        assert f"| {row} |" in table
    majority = next(line for line in table.splitlines() if "| majority |" in line)
    assert "| 0.0000 |" in majority  # F1 of always-benign; one seed: no "± 0" spread that was never measured
    assert "one seed: no spread" in table and "CPU cores" in table  # and the machine it ran on
    assert "`accuracy.png`" in table and (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # a whole benchmark or search
def test_sweep_study_is_stored_and_resumes(tmp_path):
    spec = {"study_name": "tiny", "metric": "val/f1_best", "direction": "maximize",
            "overrides": ["model=student", "distill=none", "trainer.max_epochs=1", *TINY,
                          "trainer.enable_progress_bar=false"],
            "params": {"model.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    from mstr.sweep import main as sweep_main

    sweep_main([str(path), "--n-trials", "2", "--storage", storage, "--out", str(tmp_path / "runs")])
    sweep_main([str(path), "--n-trials", "3", "--storage", storage, "--out", str(tmp_path / "runs")])  # the total
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 3 and all(t.value is not None for t in study.trials)
    assert len(list((tmp_path / "runs" / "tiny").glob("trial*/metrics.json"))) == 3
    assert not any("test/f1" in __import__("json").loads(p.read_text())
                   for p in (tmp_path / "runs" / "tiny").glob("trial*/metrics.json"))  # test never scored


@pytest.mark.slow  # a whole benchmark or search
def test_ablation_benchmark_changes_one_thing_per_row(tmp_path):
    """Each architecture row differs from the default student by one setting; the window rows exist only
    for data with time; the table reports deltas against the default."""
    from mstr.bench import ablation

    assert [v.name for v in ablation.variants("nsl_kdd", ("architecture",))] == [
        "student_nokd", *(v.name for v in ablation.ARCHITECTURE), "columns by dependence", "columns shuffled",
        "row branch", "no numeric bins"]  # nsl_kdd's bins
    assert [v.name for v in ablation.variants("unsw_nb15", ("architecture",))][-5:] == [
        "columns in the data's order", "columns shuffled",  # unsw_nb15's are ordered by dependence,
        "no row branch", "no numeric bins", "no frequent values"]  # it has a row branch, indicators too
    timed = [v.name for v in ablation.variants("synthetic", ("architecture",))]
    assert "window 16" in timed and "no time branches" in timed and "no context swap" not in timed
    assert [v.name for v in ablation.variants("cic_ids2017", ("architecture",))][-6:] == [
        "numeric bins", "no time branches", "window 1", "window 4", "window 16", "no context swap"]
    bench_main(["ablation", "--datasets", "synthetic", "--seeds", "0", "--epochs", "1", "--groups", "architecture",
                "--out", str(tmp_path), "--override", *TINY])
    table = (tmp_path / "ablation.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| synthetic |")]
    assert len(rows) == len(timed)
    linear = next(r for r in rows if "| linear stem |" in r)
    params = {r.split("|")[2].strip(): r.split("|")[13].strip() for r in rows}
    assert params["linear stem"] != params["default student, no KD"]  # a different model, not a relabel
    # Δacc, ΔF1 and ΔAUROC vs default are filled: a number each (one seed, so no ± spread)
    assert all(abs(float(linear.split("|")[i])) <= 1 and "±" not in linear.split("|")[i] for i in (4, 7, 10))
    assert linear.split("|")[5].strip() in ("0/1", "1/1")  # seeds on which it beats the default
    assert linear.split("|")[16].strip().endswith(("(0/1)", "(1/1)"))  # what validation said, per seed
    assert "val unseen-type recall" not in table  # only for runs with data.val_unseen_types
    assert "`ablation.png`" in table and (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    # --variants: only the named rows, from the finished runs
    finished = {p: p.stat().st_mtime for p in tmp_path.glob("runs/synthetic/*/seed0/metrics.json")}
    bench_main(["ablation", "--datasets", "synthetic", "--seeds", "0", "--epochs", "1", "--groups", "architecture",
                "--variants", "student_nokd", "linear_stem", "--out", str(tmp_path), "--override", *TINY])
    rows = [line for line in (tmp_path / "ablation.md").read_text().splitlines() if line.startswith("| synthetic |")]
    assert [r.split("|")[2].strip() for r in rows] == ["default student, no KD", "linear stem"]
    assert finished == {p: p.stat().st_mtime for p in finished}
    with pytest.raises(SystemExit) as stop:
        bench_main(["ablation", "--datasets", "synthetic", "--variants", "no_such_row", "--out", str(tmp_path)])
    assert stop.value.code == 2


@pytest.mark.slow  # a whole benchmark or search
def test_scale_benchmark_runs_the_default_student_through_the_pipeline(tmp_path):
    """Each size in its own process: setup, a few training batches, scoring; a row per size."""
    bench_main(["scale", "--rows", "6000", "12000", "--train-batches", "2", "--batch-size", "256",
                "--score-windows", "500", "--out", str(tmp_path)])
    results = {r["rows"]: r for r in json.loads((tmp_path / "scale" / "results.json").read_text())}
    assert set(results) == {6000, 12000} and not any("failed" in r for r in results.values())
    for rows, r in results.items():
        assert r["train_rows"] + r["test_rows"] < rows and r["score_windows"] == 500 and r["peak_rss_gib"] > 0
    table = (tmp_path / "scale.md").read_text()
    assert "| 6,000 |" in table and "| 12,000 |" in table


@pytest.mark.slow  # a whole benchmark or search
def test_speed_benchmark_times_every_runtime_and_peer_on_kddtest_rows(tmp_path, data_dir):
    """`--no-train`: the same architectures, untrained (the same arithmetic), exported and timed beside
    the peers fitted on full KDDTrain+; one pass each here, the figures are the README's business."""
    bench_main(["speed", "--no-train", "--repeats", "1", "--calls", "30", "--batch", "8192", "--out", str(tmp_path)])
    measured = json.loads((tmp_path / "speed" / "measured.json").read_text())
    assert set(measured) == {"teacher / PyTorch", "student / PyTorch", "student / TorchScript",
                             "student / ONNX Runtime", "random_forest / predict_proba", "lightgbm / predict_proba",
                             "xgboost / predict_proba"}
    for name, (flows_per_s, p50, p99) in measured.items():
        assert flows_per_s > 0 and 0 < p50 <= p99, name
    report = (tmp_path / "speed.md").read_text()
    assert "KDDTest+ (22,544 flows" in report and "| student | ONNX Runtime |" in report
    assert "| lightgbm | " in report and "student, no KD" not in report  # only the peers were trained
    assert "Bars: `speed.png`" in report and (tmp_path / "speed.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # a whole benchmark or search
def test_speed_benchmark_times_windowed_experiments_flow_by_flow(tmp_path, monkeypatch):
    """`--experiment`: a data set with windows of 8 flows; the networks score each flow's window (the
    student as exported, its last block at the newest flow), the peers the same flows alone. The
    exported student's temporary folder is removed."""
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    bench_main(["speed", "--experiment", "synthetic_multiclass", "--no-train", "--repeats", "1", "--calls", "20",
                "--student", "model.backbone.widths=[4]", "--out", str(tmp_path)])
    assert not list((tmp_path / "tmp").rglob("student.*"))
    measured = json.loads((tmp_path / "speed_synthetic_multiclass" / "measured.json").read_text())
    assert len(measured) == 7 and all(flows_per_s > 0 for flows_per_s, _, _ in measured.values())
    report = (tmp_path / "speed_synthetic_multiclass.md").read_text()
    assert "windows of 8 flow(s) for the networks" in report and "| xgboost | predict_proba |" in report
    assert "model.backbone.widths=[4])" in report  # the student timed is the one asked for


@pytest.mark.parametrize("args, message", [
    (["--help"], "{accuracy,distill,ablation,speed,scale,loss}"),  # every benchmark in the usage
    (["accuracy", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got '0'"),
    (["distill", "--teacher-epochs", "-1"], "argument --teacher-epochs: must be an integer >= 1"),
    (["accuracy", "--seeds", "0", "x"], "argument --seeds: must be an integer >= 0, got 'x'"),
    (["accuracy", "--datasets", "synthetic", "--variants", "student_nokd", "student_logit"],
     "--variants ['student_logit']: not rows of this benchmark; choose from ['student_nokd', 'student_logits']"),
    (["accuracy", "--seeds", "0", "1", "0"], "--seeds 0 1 0: [0] given twice; give each once"),
    (["distill", "--datasets", "synthetic", "synthetic"], "--datasets synthetic synthetic: ['synthetic'] given twice"),
    (["accuracy", "--datasets", "synthetic", "--override", "bogus.key=1"], "--override on synthetic: bogus.key: no such key"),
    (["accuracy", "--datasets", "synthetic", "--override", "model.optim.lr=0.1,0.2"],  # no -m in a benchmark
     "--override on synthetic: model.optim.lr=0.1,0.2: several values are a sweep; give one value"),
    (["speed", "--experiment", "bogus"], "--experiment bogus: experiment=bogus: no such config; options: cic_ids2017, "),
    (["speed", "--threads", "0"], "argument --threads: must be an integer >= 1, got '0'"),
    (["scale", "--rows", "-5"], "argument --rows: must be an integer >= 500, got '-5'"),
    (["loss", "--model", "/nonexistent"], "/nonexistent: not an mstr artifact (no manifest.json)"),
    (["loss", "--epochs", "0"], "--epochs must be positive, got 0"),
])
def test_bad_options_stop_a_benchmark_with_one_line(tmp_path, capsys, args, message):
    out = ["--out", str(tmp_path / "bench")] if args != ["--help"] else []
    with pytest.raises(SystemExit) as stop:
        bench_main([*args, *out])
    captured = capsys.readouterr()
    if args == ["--help"]:
        assert stop.value.code == 0 and message in captured.out
        return
    lines = captured.err.strip().splitlines()  # one line: argparse's usage block is not printed
    assert stop.value.code == 2 and len(lines) == 1 and message in lines[0], captured.err
    assert not (tmp_path / "bench").exists()  # no report, no half-written results


@pytest.mark.parametrize("module, args, message", [
    ("mstr.detect", ["--modle", "x"], "unknown option --modle; did you mean --model? (see python -m mstr.detect --help)"),
    ("mstr.bench.__main__", ["accuracy", "--seedz", "1"],
     "unknown option --seedz; did you mean --seeds? (see python -m mstr.bench accuracy --help)"),
    ("mstr.bench.__main__", ["--datasets", "nsl_kdd", "distill"],  # the flat parser of before took this order
     "--datasets goes after the sub-command: python -m mstr.bench accuracy|distill|ablation --datasets ..."),
    ("mstr.bench.__main__", ["--out", "x"],  # every benchmark has --out: the deployment ones are named too
     "--out goes after the sub-command: python -m mstr.bench accuracy|distill|ablation|speed|scale|loss --out ..."),
    ("mstr.bench.__main__", ["--threads", "2", "speed"], "--threads goes after the sub-command: python -m mstr.bench "
                                                         "speed|scale|loss --threads ..."),
    ("mstr.bench.__main__", ["accuracy", "--groups", "architecture"], "--groups is not an option of accuracy but of ablation"),
    ("mstr.bench.__main__", ["acuracy", "--out", "x"],  # the sub-command is what is wrong, not --out's place
     "argument {accuracy,distill,ablation,speed,scale,loss}: invalid choice: 'acuracy'"),
    ("mstr.compare", ["--metrik", "val/f1", "."], "unknown option --metrik; did you mean --metric?"),
    ("mstr.sweep", ["sweeps/distill_student.yaml", "--ntrials", "3"], "unknown option --ntrials; did you mean --n-trials?"),
    ("mstr.data.fetch", ["nsl_kdd", "--rooot", "x"], "unknown option --rooot; did you mean --root?"),
    ("mstr.compare", [], "the following arguments are required: dirs (see python -m mstr.compare --help)"),
])
def test_plain_entry_points_name_a_misspelt_option_in_one_line(module, args, message, capsys):
    """argparse's usage block and its 'required' complaint about the option a typo hid are one line."""
    import importlib

    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines


def test_the_scale_benchmarks_child_entry_typed_by_hand_errs_in_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    proc = subprocess.run([sys.executable, "-m", "mstr.bench.scale", "--out", str(tmp_path / "file" / "x")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: --out {tmp_path / 'file' / 'x'}: {tmp_path / 'file'} is not a writable folder; give another --out"]


def test_each_benchmarks_help_lists_its_own_options_and_no_empty_defaults(capsys):
    helps = {}
    for name in ("accuracy", "ablation", "speed", "scale", "loss"):
        with pytest.raises(SystemExit) as stop:
            bench_main([name, "--help"])
        helps[name] = capsys.readouterr().out
        assert stop.value.code == 0 and f"python -m mstr.bench {name}" in helps[name]
        assert "(default: None)" not in helps[name] and "(default: False)" not in helps[name], helps[name]
    assert "--groups" in helps["ablation"] and "--groups" not in helps["accuracy"]
    assert "--seeds" in helps["accuracy"] and "--threads" in helps["speed"] and "--threads" not in helps["accuracy"]


@pytest.mark.parametrize("args", [["accuracy", "--datasets", "synthetic"], ["speed", "--no-train"],
                                  ["scale", "--rows", "500"], ["loss"]])
def test_an_unwritable_out_stops_a_benchmark_before_any_work(tmp_path, capsys, args):
    """The report is written at the end: an --out under a file is one line at the start, not a
    traceback after the runs."""
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as stop:
        bench_main([*args, "--out", str(tmp_path / "a_file" / "bench")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and lines[-1].startswith("error: --out ") and "a_file is not a writable folder" in lines[-1]


def test_ctrl_c_stops_a_benchmark_with_one_line_and_no_report(tmp_path, capsys, monkeypatch):
    """Ctrl-C mid-benchmark (a scale size's process; a training run, which raises `Interrupted`): one
    line and exit 128 + signal, not a traceback, and no report; a scale child stopped by the same Ctrl-C
    exits quietly (its parent says it)."""
    import signal

    from mstr.bench import __main__ as bench, scale
    from mstr.errors import Interrupted

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    def sigterm_in_a_run(*args):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(scale.subprocess, "run", ctrl_c)
    monkeypatch.setattr(bench, "run_matrix", sigterm_in_a_run)
    for args, code, said in ((["scale", "--rows", "500"], 130, "interrupted by SIGINT: no report was written"),
                             (["accuracy", "--datasets", "synthetic"], 143,
                              "interrupted by SIGTERM: no report was written; the same command reuses the runs")):
        with pytest.raises(SystemExit) as stop:
            bench_main([*args, "--out", str(tmp_path)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == code and len(lines) == 1 and lines[0].startswith(said), lines
    assert not list(tmp_path.glob("*.md"))
    monkeypatch.setattr(scale, "measure", ctrl_c)
    with pytest.raises(SystemExit) as stop:
        scale.main(["--child", "--rows", "500"])
    assert stop.value.code == 130 and capsys.readouterr().err == ""


def test_a_missing_data_folder_is_not_blamed_on_override(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MSTR_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as stop:
        bench_main(["accuracy", "--datasets", "nsl_kdd", "--out", str(tmp_path / "bench")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and line.startswith("error: ") and "nowhere/nsl_kdd: no such folder" in line
    assert "--override" not in line  # none was given


@pytest.mark.slow  # Lightning's start and a synthetic table: ~6 s
def test_scale_counts_the_windows_it_trained_on_a_split_smaller_than_the_batches():
    """500 flows cannot fill 10 batches of 4,096 windows (the defaults): µs per training window is over
    the windows of the one epoch, not over 40,960 that never ran."""
    from mstr.bench.scale import measure

    result = measure(500, batch_size=4096, threads=1, train_batches=10, score_windows=10)
    assert result["train_windows"] == result["train_rows"] < 4096


def test_loss_says_the_lowest_rate_that_drops_whatever_the_order_of_rates(tmp_path, monkeypatch):
    """A detector that drops from its capacity on (a stand-in for the stream): with --rates given high
    to low the table still says it breaks at 1x, not at the first rate listed."""
    from types import SimpleNamespace

    from mstr.bench import loss
    from mstr.deploy import artifact

    capacity = 1000.0

    def replay(model, lines, rate, *args):
        dropped = len(lines) if rate and rate >= capacity else 0
        return SimpleNamespace(dropped=dropped, flows_per_s=capacity), {}

    monkeypatch.setattr(loss, "replay", replay)
    monkeypatch.setattr(artifact, "load_artifact", lambda folder: SimpleNamespace(
        folder=folder, spec={"role": "student", "input": {"format": "nsl_kdd"}}))
    bench_main(["loss", "--model", "stand-in", "--shares", "0.5", "--rates", "4", "1", "0.5", "--repeats", "1",
                "--out", str(tmp_path)])
    assert "The median drop is above zero: 50% attacks: from 1,000 flows/s." in (tmp_path / "loss.md").read_text()


def test_ablation_variants_are_checked_against_every_datasets_rows(tmp_path, capsys):
    """`window_16` is a row of the data with time only: asked with NSL-KDD beside, NSL-KDD runs without
    it; a name that is no dataset's row stops the benchmark before its first run."""
    from mstr.bench import ablation
    from mstr.bench.__main__ import _only

    rows = {d: ablation.variants(d, ("architecture",)) for d in ("nsl_kdd", "synthetic")}
    every = [v for variants in rows.values() for v in variants]
    assert [v.name for v in _only(rows["nsl_kdd"], ["student_nokd", "window_16"], every)] == ["student_nokd"]
    assert [v.name for v in _only(rows["synthetic"], ["student_nokd", "window_16"], every)] == [
        "student_nokd", "window 16"]
    with pytest.raises(SystemExit) as stop:
        bench_main(["ablation", "--datasets", "synthetic", "nsl_kdd", "--groups", "architecture",
                    "--variants", "window_16", "window_61", "--out", str(tmp_path / "bench")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and "--variants ['window_61']: not rows of this benchmark" in line
    assert not (tmp_path / "bench").exists()


def test_a_report_interrupted_while_written_is_not_left_half_written(tmp_path, monkeypatch):
    from pathlib import Path

    from mstr.bench.report import write_report

    def half_then_ctrl_c(path, text):
        with open(path, "w") as fh:
            fh.write(text[: len(text) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", half_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_report(tmp_path, "speed", "| a | b |\n|---|---|\n" * 100, ["speed"])
    assert not (tmp_path / "speed.md").exists()


@pytest.mark.slow  # three data configs composed and set up: ~5 s
def test_accuracy_peers_are_fitted_again_for_other_data(tmp_path, monkeypatch):
    """The peers' cache is per seed and data config: with another --override of the data the table's
    peers are fitted on the new splits, as its networks are, not read from the first run."""
    from mstr import peers
    from mstr.bench.__main__ import _peers

    fits = []

    def run_peers(dm, names, seed):
        fits.append(len(dm.dataset("train")))
        return {"majority": {"train_rows": fits[-1]}}

    monkeypatch.setattr(peers, "run_peers", run_peers)
    small, large = (_peers(tmp_path, "synthetic", 0, [f"data.source.n_flows={n}"])["majority"]["train_rows"]
                    for n in (1000, 3000))
    assert small < large and len(fits) == 2
    assert _peers(tmp_path, "synthetic", 0, ["data.source.n_flows=3000"])["majority"]["train_rows"] == large
    assert len(fits) == 2  # the same data again: the cached fit


def test_a_finished_speed_or_loss_run_is_reused_only_for_the_same_config(tmp_path, monkeypatch):
    """`bench speed --reuse` and `bench loss`'s own student: another --epochs is another run, trained."""
    from mstr.bench.speed import train_run
    from mstr.jobs import train
    from mstr.jobs.rundir import CONFIG_KEY_FILE, config_key

    trained = []

    def run(cfg):  # a finished run, as mstr.train leaves it
        trained.append(cfg.trainer.max_epochs)
        (tmp_path / CONFIG_KEY_FILE).write_text(config_key(cfg) + "\n")
        (tmp_path / "metrics.json").write_text(json.dumps({"epochs": cfg.trainer.max_epochs}))
        return {"epochs": cfg.trainer.max_epochs}

    monkeypatch.setattr(train, "run", run)
    got = [train_run(tmp_path, "nsl_kdd", ["model=student"], epochs, 512, reuse=True)["epochs"] for epochs in (1, 2, 2)]
    assert got == [1, 2, 2] and trained == [1, 2]
