"""`python -m mstr.bench accuracy|distill|ablation|speed|scale|loss [options]`: benchmarks that print markdown tables.

  accuracy  teacher, distilled student and student without distillation, beside the classic peers
            (majority, best single-feature threshold, logistic regression, random forest, LightGBM,
            XGBoost), over seeds, on each dataset: mean ± std of accuracy, F1, specificity, FPR, AUROC.
  distill   teacher, student without KD, and the student with each distillation method, over seeds,
            with the compression columns (parameters, MACs, CPU latency, throughput, Δ vs teacher).
  ablation  each design choice on its own (see mstr.bench.ablation).
  speed, scale, loss  the deployed detector: see mstr/bench/speed.py, scale.py, loss.py.

Each dataset trains with its experiment config (`experiment=<dataset>`, the recommended settings);
`cic_ids2017_multiclass` is CIC-IDS2017's 15-class task (its own experiment config).

Everything runs on the real splits of each data config (test sets read once per run, for its final
report; model selection on validation). Tables are printed and written to `<out>/<name>.md`.
Jobs already finished in `<out>` are reused (see mstr.bench.runs), so the two benchmarks share runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import warnings
from pathlib import Path

from mstr.bench import ablation
from mstr.bench.report import check_out, machine, write_report
from mstr.bench.runs import DATASETS, HelpWithDefaults, Variant, run_dirname, markdown, mean_std, run_matrix
from mstr.cli_args import ArgumentParser, at_least
from mstr.config import compose_config
from mstr.errors import ConfigError, Interrupted, MstrError, report_and_exit
from mstr.jobs.report import write_json
from mstr.options import DISTILL_METHODS, PEERS

DEFAULT_DATASETS = ("nsl_kdd", "unsw_nb15", "cic_ids2017", "cic_ids2017_multiclass")
DEPLOYMENT = ("speed", "scale", "loss")  # mstr/bench/<name>.py, each with its own options
BENCHMARKS = {
    "accuracy": "teacher, distilled student and student without KD beside the classic peers, over seeds",
    "distill": "every distillation method against the teacher and the student without KD, with compression columns",
    "ablation": "each design choice on its own (mstr.bench.ablation), over seeds",
}
METRICS = ("acc", "f1", "specificity", "fpr", "auroc", "novel_attack_recall", "fresh_rows_acc")


def _variants(methods: tuple[str, ...]) -> list[Variant]:
    distilled = [Variant(f"student_{m}", ("model=student", f"distill={m}")) for m in methods]
    return [Variant("student_nokd", ("model=student", "distill=none")), *distilled]


def _only(variants: list[Variant], names, known: list[Variant] | None = None) -> list[Variant]:
    """The variants named (by their run dir name), all when `names` is None. A name that is none of
    `known` (default: `variants`; the ablation's rows of every dataset, some of which only some have) is
    refused, before the first run."""
    if names is None:
        return variants
    known = variants if known is None else known
    unknown = [n for n in names if not any(n in (v.name, run_dirname(v.name)) for v in known)]
    if unknown:  # one misspelt name among good ones would silently drop its row
        raise MstrError(f"--variants {unknown}: not rows of this benchmark; choose from "
                        f"{list(dict.fromkeys(run_dirname(v.name) for v in known))}")
    return [v for v in variants if run_dirname(v.name) in names or v.name in names]


def _peers(out: Path, dataset: str, seed: int, common: list[str]) -> dict:
    """Peer baselines on the same DataModule (same splits, same preprocessing); cached per seed and data
    config (another `--override data...` makes other splits: the peers are fitted again, as the networks are)."""
    from hydra.utils import instantiate

    from mstr.jobs.rundir import config_key
    from mstr.peers import run_peers

    path = out / "runs" / dataset / "peers" / f"seed{seed}.json"
    cfg = compose_config("train", [*DATASETS[dataset], f"seed={seed}", *common, f"paths.output_dir={path.parent}"])
    data = config_key(cfg.data)
    cached = json.loads(path.read_text()) if path.is_file() else {}
    if cached.get("data") == data:
        return cached["results"]
    dm = instantiate(cfg.data)
    dm.setup()
    results = run_peers(dm, PEERS, seed)
    write_json(path, {"data": data, "results": results})
    return results


def _row(label: str, runs: list[dict], prefix: str, params_key: str) -> list[str]:
    cells = [mean_std([r[f"{prefix}test/{m}"] for r in runs if f"{prefix}test/{m}" in r])
             if any(f"{prefix}test/{m}" in r for r in runs) else "" for m in METRICS]
    params = runs[0].get(params_key, "") if runs else ""
    return [label, *cells, f"{params:,}" if isinstance(params, int) else str(params)]


def accuracy_models(variants: dict, peers: dict) -> list[tuple[str, list[dict], str, str]]:
    """One dataset's models as the accuracy benchmark shows them: (label, runs, metric key prefix,
    parameter count key); a distilled run also carries its teacher's and its novelty gate's metrics."""
    kd = variants.get("student_logits", [])
    models = [("teacher (mstr)", kd, "teacher/", "teacher/model/params"),
              ("student, distilled (mstr)", kd, "", "model/params"),
              ("student, no KD (mstr)", variants.get("student_nokd", []), "", "model/params")]
    if any("novelty/test/acc" in r for r in kd):
        models.append(("student, distilled + novelty gate (mstr)", kd, "novelty/", "model/params"))
    return models + [(peer, peers.get(peer, []), "", "") for peer in PEERS]


def accuracy_table(results: dict, peers: dict) -> str:
    header = ["dataset", "model", "accuracy", "F1", "specificity", "FPR", "AUROC", "unseen-attack recall",
              "accuracy on rows not in train", "params"]
    rows = [[dataset, *_row(*model)] for dataset, variants in results.items()
            for model in accuracy_models(variants, peers.get(dataset, {}))]
    return markdown(header, rows)


def accuracy_scores(results: dict, peers: dict) -> dict[str, list[tuple[str, list[float]]]]:
    """Per dataset, each model's test accuracy per seed (what `mstr.plots.accuracy` draws)."""
    return {dataset: [(label, [r[f"{prefix}test/acc"] for r in runs if f"{prefix}test/acc" in r])
                      for label, runs, prefix, _ in accuracy_models(variants, peers.get(dataset, {}))]
            for dataset, variants in results.items()}


def distill_table(results: dict) -> str:
    header = ["dataset", "model", "accuracy", "F1", "specificity", "params", "MACs/window",
              "latency ms (1 window)", "windows/s (batch 1024)", "Δacc vs teacher", "Δacc vs no-KD"]
    rows = []
    for dataset, variants in results.items():
        nokd = variants.get("student_nokd", [])
        kd = variants.get("student_logits", [])
        if kd:
            c = kd[0]
            rows.append([dataset, "teacher", mean_std([r["teacher/test/acc"] for r in kd]),
                         mean_std([r["teacher/test/f1"] for r in kd]),
                         mean_std([r["teacher/test/specificity"] for r in kd]),
                         f"{c.get('teacher/model/params', 0):,}", f"{c.get('teacher/model/macs', 0):,}",
                         _fmt(kd, "time/compression/teacher_latency_ms"), _fmt(kd, "time/compression/teacher_throughput_wps", 0),
                         "", ""])
        for name, runs in variants.items():
            if not runs:
                continue
            accs = [r["test/acc"] for r in runs]
            delta_t = ([r["test/acc"] - r["teacher/test/acc"] for r in runs] if "teacher/test/acc" in runs[0] else [])
            delta_n = [a - b["test/acc"] for a, b in zip(accs, nokd)] if nokd and name != "student_nokd" else []
            rows.append([dataset, name, mean_std(accs), mean_std([r["test/f1"] for r in runs]),
                         mean_std([r["test/specificity"] for r in runs]), f"{runs[0]['model/params']:,}",
                         f"{runs[0]['model/macs']:,}", _fmt(runs, "time/compression/student_latency_ms"),
                         _fmt(runs, "time/compression/student_throughput_wps", 0),
                         mean_std(delta_t) if delta_t else "", mean_std(delta_n) if delta_n else ""])
    return markdown(header, rows)


def _fmt(runs: list[dict], key: str, digits: int = 3) -> str:
    values = [r[key] for r in runs if key in r]
    return f"{sum(values) / len(values):,.{digits}f}" if values else "n/a"


def _parser() -> argparse.ArgumentParser:
    """One sub-command per training benchmark, each with only its own options in `--help`; the
    deployment benchmarks are listed too, with their options, but parse them themselves (dispatched
    before this)."""
    defaults = HelpWithDefaults
    runs = ArgumentParser(add_help=False)
    runs.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS), help=f"from {list(DATASETS)}")
    runs.add_argument("--seeds", nargs="+", type=at_least(0), default=[0, 1, 2], help="one run of each row per seed")
    runs.add_argument("--epochs", type=at_least(1), default=None, help="student max epochs (default: the experiment's)")
    runs.add_argument("--teacher-epochs", type=at_least(1), default=None,
                      help="teacher max epochs (default: the experiment's)")
    runs.add_argument("--batch-size", type=at_least(1), default=None, help="default: the experiment's")
    runs.add_argument("--variants", nargs="+", help="only these rows, by run name (student_nokd, student_logits, "
                                                    "student_logits_lightgbm, ...; as under <out>/runs/<dataset>/)")
    runs.add_argument("--out", type=Path, default=Path("outputs/bench"),
                      help="runs under <out>/runs (finished ones are reused), the report <out>/<benchmark>.md")
    runs.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run")
    parser = ArgumentParser(prog="python -m mstr.bench", description=__doc__.split("\n\n")[0],
                            formatter_class=defaults)
    benchmarks = parser.add_subparsers(dest="benchmark", required=True, metavar="{" + ",".join(
        ("accuracy", "distill", "ablation", *DEPLOYMENT)) + "}")
    for name, summary in BENCHMARKS.items():
        sub = benchmarks.add_parser(name, parents=[runs], help=summary, description=summary, formatter_class=defaults)
        if name == "ablation":
            sub.add_argument("--groups", nargs="+", default=["architecture", "distillation"],
                             choices=("architecture", "distillation"), help="which rows")
    for name in DEPLOYMENT:  # their own options, so that one typed before the sub-command is named as theirs
        options = importlib.import_module(f"mstr.bench.{name}").parser()
        benchmarks.add_parser(name, parents=[options], add_help=False,
                              help=f"the deployed detector: python -m mstr.bench {name} --help")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        _run(argv)
    except (Interrupted, KeyboardInterrupt) as err:
        # Ctrl-C (SIGTERM too, while a network trains): one line, not a traceback; the report is written
        # whole at the end, so there is none
        stop = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)
        reuse = "" if argv[:1] and argv[0] in DEPLOYMENT else "; the same command reuses the runs that finished"
        print(f"interrupted by {stop.signal_name}: no report was written{reuse}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)


def _run(argv: list[str]) -> None:
    if argv and argv[0] in DEPLOYMENT:
        try:
            return importlib.import_module(f"mstr.bench.{argv[0]}").main(argv[1:])
        except MstrError as err:
            report_and_exit(err)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers|smaller than the logging).*")
    try:
        unknown = [d for d in args.datasets if d not in DATASETS]
        if unknown:
            raise MstrError(f"--datasets {unknown}: choose from {list(DATASETS)}")
        for option, values in (("--datasets", args.datasets), ("--seeds", args.seeds)):
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:  # the same run again: its metrics would count twice, a spread of 0 never measured
                raise MstrError(f"{option} {' '.join(map(str, values))}: {twice} given twice; give each once")
        common = [*([f"trainer.max_epochs={args.epochs}"] if args.epochs is not None else []),
                  *([f"++distill.teacher_max_epochs={args.teacher_epochs}"] if args.teacher_epochs is not None else []),
                  *([f"data.batch_size={args.batch_size}"] if args.batch_size is not None else []),
                  "trainer.enable_progress_bar=false", "logger=csv", *args.override]
        from mstr.preflight import preflight

        for dataset in args.datasets:  # a bad --override: one line, before the first run
            try:
                preflight([*DATASETS[dataset], *common], "train")
            except ConfigError as err:  # not a DataError: a missing data folder says so itself
                raise MstrError(f"--override on {dataset}: {err}") from None
        check_out(args.out)
        if args.benchmark == "ablation":
            rows = {d: ablation.variants(d, tuple(args.groups)) for d in args.datasets}
            every = [v for variants in rows.values() for v in variants]
            results = {d: run_matrix(args.out, [d], _only(rows[d], args.variants, every), args.seeds, common)[d]
                       for d in args.datasets}
            table = ablation.table(results)
            drawn = ablation.deltas(results)
            if any(drawn.values()):
                from mstr import plots

                plots.ablation(drawn, args.out / "ablation.png", f"each change to the default student, seeds {args.seeds}")
                table += "\n\nForest plot of the differences to the default: `ablation.png`."
        else:
            methods = ("logits",) if args.benchmark == "accuracy" else DISTILL_METHODS
            results = run_matrix(args.out, args.datasets, _only(_variants(methods), args.variants), args.seeds, common)
        if args.benchmark == "accuracy":
            peers = {d: {} for d in args.datasets}
            for d in args.datasets:
                for seed in args.seeds:
                    for name, metrics in _peers(args.out, d, seed, common).items():
                        peers[d].setdefault(name, []).append(metrics)
            table = accuracy_table(results, peers)
            scores = accuracy_scores(results, peers)
            if any(acc for rows in scores.values() for _, acc in rows):
                from mstr import plots

                plots.accuracy(scores, args.out / "accuracy.png", f"seeds {args.seeds}")
                table += "\n\nEach model's accuracy per seed, beside the peers': `accuracy.png`."
        elif args.benchmark == "distill":
            table = distill_table(results)
    except MstrError as err:
        report_and_exit(err)
    spread = "mean ± std" if len(args.seeds) > 1 else "one seed: no spread"
    write_report(args.out, args.benchmark, f"Seeds {args.seeds} ({spread}); {machine()}.\n\n{table}\n", argv)


if __name__ == "__main__":
    main()
