"""`python -m mstr.bench scale`: training and scoring on synthetic tables of 1M and 10M flows.

Each size runs in its own process (so its peak RSS is its own) through the real pipeline: the
synthetic generator and `FlowDataModule.setup` over all rows (split, validation carve, preprocessing
fit on train, causal windows by index, leakage audit), then the student trained with Lightning for a
fixed number of batches drawn by the sampler from the whole training split, and scoring of a fixed
number of windows spread evenly over the whole test split. Fixed step counts keep a 10M run within
minutes on a shared 2-core machine; since every batch gathers its windows by index from the full
table, µs per window at 1M vs 10M shows whether training and scoring slow down as the table grows.
Reported per size: rows, seconds, microseconds per row or window (flat when the pipeline scales
linearly) and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from mstr.bench.report import check_out, machine, write_report
from mstr.bench.runs import HelpWithDefaults, markdown
from mstr.cli_args import ArgumentParser, at_least
from mstr.errors import MstrError, report_and_exit
from mstr.jobs.report import write_json

MIN_ROWS = 500  # the synthetic generator's least

def measure(rows: int, batch_size: int, threads: int, train_batches: int, score_windows: int) -> dict:
    """Phases of the pipeline on `rows` synthetic flows, in this process."""
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, Subset

    from mstr.config import compose_config
    from mstr.data.datamodule import FlowDataModule
    from mstr.data.datasets.synthetic import load
    from mstr.data.windows import collate_prebatched
    from mstr.training.evaluation import predict
    from mstr.training.runner import build_module

    torch.set_num_threads(threads)
    days = max(2.0, rows / 15_000)  # the same traffic density at every size
    dm = FlowDataModule(partial(load, n_flows=rows, days=days, n_hosts=max(60, rows // 500)), name="synthetic",
                        window=8, batch_size=batch_size, eval_batch_size=8192, sampler="none")
    result = {"rows": rows}
    start = time.perf_counter()
    dm.setup()
    result["setup_s"] = time.perf_counter() - start
    result["generated_rows"] = sum(len(t) for t in dm.tables.values())  # tiny sizes come out larger
    result["train_rows"] = len(dm.dataset("train"))
    result["test_rows"] = len(dm.dataset("test_synthetic"))
    cfg = compose_config("train", ["model=student", "model.optim.scheduler=none"])  # the default student
    module = build_module(cfg.model, cfg.loss, dm)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=train_batches, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, limit_val_batches=0, enable_model_summary=False,
                         accelerator="cpu", devices=1)
    loader = dm.train_dataloader()
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    result["train_s"] = time.perf_counter() - start
    # the one epoch ends early where the training split holds fewer windows than the batches asked for
    result["train_windows"] = min(train_batches * batch_size, len(loader.sampler))
    test = dm.dataset("test_synthetic")
    spread = torch.linspace(0, len(test) - 1, min(score_windows, len(test))).long().tolist()
    loader = DataLoader(Subset(test, spread), batch_size=8192, collate_fn=collate_prebatched)
    start = time.perf_counter()
    predict(module.model, loader)
    result["score_s"] = time.perf_counter() - start
    result["score_windows"] = len(spread)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def parser() -> ArgumentParser:
    """The options of `python -m mstr.bench scale` (also listed by `python -m mstr.bench`)."""
    options = ArgumentParser(prog="python -m mstr.bench scale", description=__doc__.split("\n\n")[0],
                            formatter_class=HelpWithDefaults)
    options.add_argument("--rows", nargs="+", type=at_least(MIN_ROWS), default=[1_000_000, 10_000_000])
    options.add_argument("--batch-size", type=at_least(1), default=4096, help="training batch size")
    options.add_argument("--threads", type=at_least(1), default=2)
    options.add_argument("--train-batches", type=at_least(1), default=10)
    options.add_argument("--score-windows", type=at_least(1), default=100_000)
    options.add_argument("--out", type=Path, default=Path("outputs/bench"))
    options.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return options


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    if args.child:
        try:
            print(json.dumps(measure(args.rows[0], args.batch_size, args.threads, args.train_batches,
                                     args.score_windows)))
        except KeyboardInterrupt:  # Ctrl-C reached the whole process group: the parent says so, in one line
            sys.exit(128 + signal.SIGINT)
        return
    check_out(args.out)
    results = []
    for rows in args.rows:
        logging.getLogger("mstr.bench.scale").info("scale: %d rows", rows)
        done = subprocess.run([sys.executable, "-m", "mstr.bench.scale", "--child", "--rows", str(rows),
                               "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                               "--train-batches", str(args.train_batches), "--score-windows", str(args.score_windows)],
                              stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            results.append({"rows": rows, "failed": done.returncode})
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    table = []
    for r in results:
        if "failed" in r:
            table.append([f"{r['rows']:,}", *["failed (exit %d)" % r["failed"]] * 7])
            continue
        flows = r.get("generated_rows", r["rows"])
        table.append([f"{flows:,}", f"{r['setup_s']:.1f}", f"{1e6 * r['setup_s'] / flows:.2f}",
                      f"{r['train_s']:.1f}", f"{1e6 * r['train_s'] / r['train_windows']:.1f}", f"{r['score_s']:.1f}",
                      f"{1e6 * r['score_s'] / r['score_windows']:.1f}", f"{r['peak_rss_gib']:.2f}"])
    text = (f"Synthetic flows (window 8, per-host groups); the student trained up to {args.train_batches} batches of "
            f"{args.batch_size} windows sampled from the whole training split, then up to {args.score_windows:,} "
            f"test windows scored; {args.threads} threads; {machine()}.\n\n"
            + markdown(["rows", "generate + setup s", "µs/row", "train s", "µs/train window", "score s",
                        "µs/scored window", "peak RSS GiB"], table) + "\n")
    write_json(args.out / "scale" / "results.json", results)
    write_report(args.out, "scale", text)


if __name__ == "__main__":  # each measurement's child process; typed by hand, its errors are one line too
    try:
        main()
    except MstrError as err:
        report_and_exit(err)
