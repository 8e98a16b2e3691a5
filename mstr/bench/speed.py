"""`python -m mstr.bench speed`: inference speed of the detector against its peers, and training time.

On the same rows (the first test set of `--experiment`, KDDTest+ by default, preprocessed by the
training pipeline), in the same process, with the same thread count (2 by default): throughput at a
large batch (median over repeats of a pass over all rows) and single-flow latency p50 / p99 (one row
per call) for the teacher (PyTorch), the student (PyTorch, TorchScript, ONNX Runtime) and the peers
(random forest, LightGBM, XGBoost, `predict_proba`). Networks score each flow's window as a detector
does (in the form `mstr.detect` and `mstr.export` run); the peers score the same flows alone. Also
the training time, on the full training split in the same run (the experiment's epochs bound, early
stopping on validation), of the teacher, the student distilled from it, the student distilled from a
LightGBM teacher, the student without KD, the student distilled within the paper's time budget
(`--budget-epochs`, from the same teacher), and the peers; a distilled student's time includes the
teacher's logits pass over the training rows, shown apart (teacher cost). Every model is trained here,
so the table is one consistent measurement of one machine.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mstr.bench.report import check_out, machine, write_report
from mstr.bench.runs import HelpWithDefaults, markdown
from mstr.cli_args import ArgumentParser, at_least
from mstr.config import compose_config
from mstr.jobs.report import write_json

log = logging.getLogger("mstr.bench.speed")
PEERS = ("random_forest", "lightgbm", "xgboost")


def train_run(out: Path, experiment: str, overrides: list[str], epochs: int, batch_size: int,
              reuse: bool = False) -> dict:
    """One `mstr.train` run of `experiment` on its full training split; its metrics (with `reuse`, those
    of a finished earlier run in `out` of the same config, to iterate on the timing part only)."""
    from mstr.jobs.rundir import CONFIG_KEY_FILE, config_key
    from mstr.jobs.train import run

    budget = [f"trainer.max_epochs={epochs}"] if epochs else []
    budget += [f"data.batch_size={batch_size}"] if batch_size else []
    cfg = compose_config("train", [f"experiment={experiment}", "novelty.fpr=0", *budget,
                                   "trainer.enable_progress_bar=false", "logger=csv", f"paths.output_dir={out}",
                                   f"paths.teacher_cache_dir={out / 'teachers'}", *overrides])
    key = out / CONFIG_KEY_FILE  # another --epochs, --student, ... is another run: trained, not reused
    if reuse and (out / "metrics.json").is_file() and key.is_file() and key.read_text().strip() == config_key(cfg):
        return json.loads((out / "metrics.json").read_text())
    return run(cfg)


def _seconds(value) -> str:
    return "" if value is None else f"{value:.1f}"


def throughput(predict: Callable, rows: np.ndarray, batch: int, repeats: int) -> float:
    """Rows per second over all `rows` in batches of `batch`: the median of `repeats` passes."""
    batches = [rows[i:i + batch] for i in range(0, len(rows), batch)]
    predict(batches[0])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            predict(b)
        times.append(time.perf_counter() - start)
    return len(rows) / statistics.median(times)


def latency_ms(predict: Callable, rows: np.ndarray, calls: int) -> tuple[float, float]:
    """(p50, p99) milliseconds of scoring one row, over `calls` different rows."""
    for i in range(10):
        predict(rows[i:i + 1])
    times = []
    for i in range(calls):
        j = i % len(rows)
        start = time.perf_counter()
        predict(rows[j:j + 1])
        times.append(time.perf_counter() - start)
    p50, p99 = np.percentile(times, [50, 99])
    return 1000 * float(p50), 1000 * float(p99)


def parser() -> ArgumentParser:
    """The options of `python -m mstr.bench speed` (also listed by `python -m mstr.bench`)."""
    options = ArgumentParser(prog="python -m mstr.bench speed", description=__doc__.split("\n\n")[0],
                            formatter_class=HelpWithDefaults)
    options.add_argument("--experiment", default="nsl_kdd", help="the experiment config whose data, models and "
                        "test rows are timed (default: nsl_kdd; the report is speed.md, else speed_<experiment>.md)")
    options.add_argument("--student", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides of every student (trained or built), e.g. model.backbone.widths=[4]")
    options.add_argument("--threads", type=at_least(1), default=2)
    options.add_argument("--epochs", type=at_least(1), default=None, help="max epochs of every network (default: the "
                        "experiment's, with early stopping)")
    options.add_argument("--batch-size", type=at_least(1), default=None, help="training batch size (default: the experiment's)")
    options.add_argument("--budget-epochs", type=at_least(0), default=8, help="also train the distilled student for this many "
                        "epochs (the paper's time budget: 22.8 s), from the same teacher; 0: skip")
    options.add_argument("--batch", type=at_least(1), default=4096, help="inference batch of the throughput columns")
    options.add_argument("--repeats", type=at_least(1), default=7)
    options.add_argument("--calls", type=at_least(1), default=1000, help="single-row calls per latency measurement")
    options.add_argument("--out", type=Path, default=Path("outputs/bench"))
    options.add_argument("--reuse", action="store_true", help="reuse finished training runs of the same config in --out")
    options.add_argument("--no-train", action="store_true", help="time freshly built teacher and student (same "
                        "architectures, untrained weights: the same speed); the training table then holds the "
                        "peers' fits alone (the peers are fitted either way: they are timed against)")
    return options


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from mstr.errors import ConfigError
    from mstr.preflight import preflight

    for given, overrides in ((f"--experiment {args.experiment}", ["model=teacher"]),
                             (f"--student {' '.join(args.student)}", ["model=student", *args.student])):
        try:  # an unknown experiment or student override: one line, before any work
            preflight([f"experiment={args.experiment}", *overrides], "train")
        except ConfigError as err:
            raise ConfigError(f"{given}: {err}") from None
    check_out(args.out)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    import torch
    from hydra.utils import instantiate

    from mstr.deploy.runtime import onnx_scorer, torch_scorer, torchscript_scorer
    from mstr.models import build_backbone
    from mstr.models.newest_flow import NewestFlowOnly
    from mstr.peers import fit_on
    from mstr.training.checkpoint import load_classifier
    from mstr.training.export import export_model

    torch.set_num_threads(args.threads)
    nsl = args.experiment == "nsl_kdd"
    report = "speed" if nsl else f"speed_{args.experiment}"
    train_name = "full KDDTrain+" if nsl else "the full training split"
    runs = args.out / report / "runs"
    budget_runs: dict[str, dict] = {}
    if not args.no_train:
        def train(run_name: str, overrides: list[str], epochs: int = args.epochs) -> dict:
            return train_run(runs / run_name, args.experiment, overrides, epochs, args.batch_size, args.reuse)

        teacher_run = train("teacher", ["model=teacher", "distill=none"])
        student_cfg = ["model=student", *args.student]
        distilled = [*student_cfg, "distill=logits", f"distill.teacher_ckpt={teacher_run['best_checkpoint']}"]
        student_run = train("student", distilled)
        tree_run = train("student_lightgbm", [*student_cfg, "distill=logits", "distill.teacher=lightgbm"])
        nokd_run = train("student_nokd", [*student_cfg, "distill=none"])
        if args.budget_epochs:
            budget_runs[f"student, distilled (network teacher), {args.budget_epochs} epochs"] = train(
                f"student_{args.budget_epochs}_epochs", distilled, args.budget_epochs)
    experiment = compose_config("train", [f"experiment={args.experiment}"])
    dm = instantiate(experiment.data)
    dm.setup()
    peers = {name: fit_on(name, dm, 0, args.threads) for name in PEERS}

    test_set = f"test_{dm.test_names[0]}"
    test = dm.dataset(test_set)
    windows = test.gather(torch.arange(len(test)))[0].numpy()
    flat = np.ascontiguousarray(dm.flows(test_set)[0], dtype=np.float32)  # the same flows, each alone
    if args.no_train:
        teacher, student = (build_backbone(dm.num_features, dm.num_classes, window=dm.window,
                                           layout=dm.preprocessor.layout(),
                                           **compose_config("train", [f"experiment={args.experiment}",
                                                                      *overrides]).model.backbone).eval()
                            for overrides in (["model=teacher"], ["model=student", *args.student]))
    else:
        teacher = load_classifier(teacher_run["best_checkpoint"]).model
        student = load_classifier(student_run["best_checkpoint"]).model
    with tempfile.TemporaryDirectory() as folder:  # the exported student; its scorers read it into memory
        tmp = Path(folder)
        example = torch.from_numpy(windows[:2])
        export_model(student, "onnx", example, tmp / "student.onnx")
        export_model(student, "torchscript", example, tmp / "student.ts")
        models = {  # PyTorch as `mstr.detect --model <checkpoint>` runs it
            ("teacher", "PyTorch"): (torch_scorer(NewestFlowOnly.of(teacher), args.threads), windows),
            ("student", "PyTorch"): (torch_scorer(NewestFlowOnly.of(student), args.threads), windows),
            ("student", "TorchScript"): (torchscript_scorer(tmp / "student.ts", args.threads), windows),
            ("student", "ONNX Runtime"): (onnx_scorer(tmp / "student.onnx", args.threads), windows),
            **{(name, "predict_proba"): (model.predict_proba, flat) for name, (model, _) in peers.items()},
        }
    measured = {}
    for key, (predict, rows) in models.items():
        log.info("timing %s (%s)", *key)
        measured[key] = (throughput(predict, rows, args.batch, args.repeats), *latency_ms(predict, rows, args.calls))
    best_peer = max(v[0] for (name, _), v in measured.items() if name in PEERS)
    rows = [[name, runtime, f"{tp:,.0f}", f"{tp / best_peer:.2f}x", f"{p50:.3f}", f"{p99:.3f}"]
            for (name, runtime), (tp, p50, p99) in measured.items()]
    speed = markdown(["model", "runtime", f"flows/s (batch {args.batch})", "vs fastest peer", "p50 ms (1 flow)",
                      "p99 ms (1 flow)"], rows)
    rows_name = "KDDTest+" if nsl else f"{args.experiment} test set '{dm.test_names[0]}'"
    budget = f"<= {args.epochs or 'experiment'} epochs, early stopping"
    train_rows = [] if args.no_train else [
        [name, f"{r['time/train_s']:.1f}", _seconds(r.get("time/teacher_targets_s")),
         f"{args.budget_epochs} epochs (onecycle over them), early stopping" if name in budget_runs else budget,
         f"{r['test/acc']:.4f}"]
        for name, r in (("teacher", teacher_run), ("student, distilled (network teacher)", student_run),
                        ("student, distilled (LightGBM teacher; its fit excluded)", tree_run),
                        ("student, no KD", nokd_run), *budget_runs.items())]
    train_rows += [[name, f"{fit_s:.1f}", "", "early stopping on validation" if name != "random_forest" else "100 trees",
                    ""] for name, (_, fit_s) in peers.items()]
    training = markdown(["model", f"training s ({train_name}, {args.threads} threads)",
                         "of which the teacher's logits pass s", "budget", f"{rows_name} accuracy"], train_rows)
    text = (f"Rows: {rows_name} ({len(windows):,} flows, {windows.shape[-1]} features, windows of {dm.window} "
            f"flow(s) for the networks; student {sum(p.numel() for p in student.parameters()):,} parameters"
            f"{', ' + ' '.join(args.student) if args.student else ''}), {args.threads} threads, "
            f"throughput median of {args.repeats} passes, latency over {args.calls:,} calls; {machine()}.\n\n"
            f"{speed}\n\nBars: `{report}.png`. Training on {train_name} in the same run:\n\n{training}\n")
    write_json(args.out / report / "measured.json", {" / ".join(k): v for k, v in measured.items()})
    from mstr import plots

    plots.speed(measured, args.out / f"{report}.png", f"{rows_name}, {args.threads} threads, batch {args.batch}")
    write_report(args.out, report, text)
