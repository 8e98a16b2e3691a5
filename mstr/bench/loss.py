"""`python -m mstr.bench loss`: traffic loss of the streaming detector under rising attack intensity.

A labelled flow stream (KDDTest+ lines, the text the NSL-KDD detector reads) is replayed into the
`mstr.detect` pipeline (`StreamRunner`: a reader thread fills a bounded queue that drops when full,
the scoring thread parses, encodes and scores with ONNX Runtime) at a paced arrival rate. First the
detector's capacity is measured (a file read with a blocking queue: nothing dropped, as fast as it
goes); then, per attack share and per arrival rate (fractions and multiples of that capacity), a
stream of that mix is replayed and counted, each as % of the offered flows:
    dropped          flows the full queue dropped (never inspected)
    benign flagged   benign flows raised as attacks (blocked inline: lost legitimate traffic)
    attacks missed   attack flows inspected and let through
    total loss       the sum
The rate at which the queue starts to drop is where the detector breaks. Lines are drawn with
replacement from KDDTest+ benign and attack lines (seeded), so every level has the mix it names.

Near capacity, drops come in bursts at random moments (a 1,000-flow queue holds ~20 ms of traffic, and
a scheduler stall or a slow batch fills it), so one replay of a level can drop 1% and the next 20%.
Each level is therefore replayed `--repeats` times on the same stream: the table shows the median of
each column and the range of the drops, and a level "drops" when its median does.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import statistics
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from mstr.bench.report import check_out, machine, write_report
from mstr.bench.runs import HelpWithDefaults, markdown
from mstr.cli_args import ArgumentParser
from mstr.errors import MstrError

log = logging.getLogger("mstr.bench.loss")


def paced(lines: list[str], rate: float) -> Iterator[str]:
    """Yield `lines` at `rate` per second from now on (in bursts when the timer is coarser)."""
    start = time.perf_counter()
    for i, line in enumerate(lines):
        due = start + i / rate
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        yield line


def replay(artifact, lines: list[str], rate: float | None, queue_size: int, batch_size: int, threads: int):
    """(summary, {line number: alert}) of one stream; rate None: read as fast as possible, never dropping."""
    from mstr.deploy.runtime import artifact_scorer
    from mstr.deploy.sources import LineParser
    from mstr.deploy.stream import Detector, StreamRunner

    detector = Detector(artifact_scorer(artifact, threads), artifact.spec)
    alerts: dict[int, bool] = {}
    runner = StreamRunner(detector, LineParser(artifact.spec, detector.encoder),
                          lambda v: alerts.__setitem__(v.flow, v.alert), queue_size, batch_size,
                          block=rate is None, write_all=True, warn_drops=False)  # the table counts them
    return runner.run(paced(lines, rate) if rate else iter(lines)), alerts


def loss_of(summary, alerts: dict[int, bool], is_attack: np.ndarray) -> tuple[float, float, float]:
    """(dropped, benign flagged, attacks missed), each as % of the offered flows, of one replay."""
    n = len(is_attack)
    flagged = np.array([alerts.get(i + 1) for i in range(n)], dtype=object)
    scored = flagged != None  # noqa: E711 (elementwise)
    return (100.0 * summary.dropped / n,
            100.0 * np.sum(scored & ~is_attack & (flagged == True)) / n,  # noqa: E712
            100.0 * np.sum(scored & is_attack & (flagged == False)) / n)  # noqa: E712


def student_artifact(out: Path, epochs: int) -> Path:
    """The distilled student of `bench speed` when it ran in `out`, else a student trained here; exported."""
    from mstr.bench.speed import train_run
    from mstr.training.export import export_artifact

    folder = out / "loss" / "artifact"
    ckpt = out / "speed" / "runs" / "student" / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        ckpt = Path(train_run(out / "loss" / "student", "nsl_kdd", ["model=student", "distill=none"], epochs, 512,
                              reuse=True)["best_checkpoint"])
    from mstr.config import compose_config

    export_artifact(ckpt, "onnx", folder, compose_config("train", ["data=nsl_kdd"]))
    return folder


def parser() -> ArgumentParser:
    """The options of `python -m mstr.bench loss` (also listed by `python -m mstr.bench`)."""
    options = ArgumentParser(prog="python -m mstr.bench loss", description=__doc__.split("\n\n")[0],
                            formatter_class=HelpWithDefaults)
    options.add_argument("--model", type=Path, help="an NSL-KDD artifact (default: export the speed benchmark's "
                        "student, or train one)")
    options.add_argument("--shares", nargs="+", type=float, default=[0.1, 0.5, 0.9])
    options.add_argument("--rates", nargs="+", type=float, default=[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0],
                        help="arrival rates as multiples of the measured capacity")
    options.add_argument("--seconds", type=float, default=3.0, help="stream length per level")
    options.add_argument("--repeats", type=int, default=3, help="replays of each level (medians are shown)")
    options.add_argument("--queue", type=int, default=1000)
    options.add_argument("--batch-size", type=int, default=256)
    options.add_argument("--threads", type=int, default=1, help="model threads (the reader takes another core)")
    options.add_argument("--epochs", type=int, default=2, help="epochs of the student when one is trained")
    options.add_argument("--seed", type=int, default=0)
    options.add_argument("--out", type=Path, default=Path("outputs/bench"))
    return options


def main(argv: list[str] | None = None) -> None:
    options = parser()
    args = options.parse_args(argv)
    for name in ("seconds", "repeats", "queue", "batch_size", "threads", "epochs"):
        if not getattr(args, name) > 0:  # NaN too
            options.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not all(0 <= share <= 1 for share in args.shares) or not all(0 < rate < math.inf for rate in args.rates):
        options.error("--shares must lie in [0, 1] and --rates be positive and finite")
    check_out(args.out)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    from mstr.data.datasets.nsl_kdd import check, find_file
    from mstr.deploy.artifact import load_artifact

    # KDDTest+ as the nsl_kdd config finds it (.txt or .txt.gz): a missing file is one line before a
    # student is trained
    data = find_file(check(os.environ.get("MSTR_DATA_DIR", "data")), "KDDTest+")
    with gzip.open(data, "rt") if data.suffix == ".gz" else open(data) as fh:
        lines = fh.readlines()
    artifact = load_artifact(args.model or student_artifact(args.out, args.epochs))
    read = artifact.spec["input"]["format"]
    if read != "nsl_kdd":  # else its parser refuses KDDTest+'s first line, and blames "the input"
        raise MstrError(f"--model {args.model}: its detector reads {read} lines, and this benchmark replays "
                        "KDDTest+: give an artifact of a model trained with data=nsl_kdd")
    attack = np.array([ln.split(",")[41].strip() != "normal" for ln in lines])
    pools = {True: [ln for ln, a in zip(lines, attack) if a], False: [ln for ln, a in zip(lines, attack) if not a]}
    capacities = [replay(artifact, lines, None, args.queue, args.batch_size, args.threads)[0].flows_per_s
                  for _ in range(3)]
    capacity = statistics.median(capacities)
    log.info("capacity %.0f flows/s (runs: %s)", capacity, [round(c) for c in capacities])
    rng = np.random.default_rng(args.seed)
    rows, levels, breaks = [], [], {}
    for share in args.shares:
        for factor in args.rates:
            rate = factor * capacity
            n = int(np.clip(rate * args.seconds, 2_000, 300_000))
            is_attack = rng.random(n) < share
            stream = [pools[bool(a)][rng.integers(len(pools[bool(a)]))] for a in is_attack]
            runs = [loss_of(*replay(artifact, stream, rate, args.queue, args.batch_size, args.threads), is_attack)
                    for _ in range(args.repeats)]
            dropped, benign_flagged, missed = (statistics.median(r[k] for r in runs) for k in range(3))
            if dropped:  # the lowest rate that drops, in whatever order --rates came
                breaks[share] = min(rate, breaks.get(share, rate))
            levels.append((share, factor, dropped, benign_flagged, missed))
            drops = [r[0] for r in runs]
            rows.append([f"{share:.0%}", f"{rate:,.0f} ({factor:g}x)", f"{n:,}", f"{dropped:.2f}",
                         f"{min(drops):.2f}-{max(drops):.2f}", f"{benign_flagged:.2f}", f"{missed:.2f}",
                         f"{dropped + benign_flagged + missed:.2f}"])
            log.info("share %.2f rate %.0f: %s", share, rate, rows[-1])
    table = markdown(["attack share", "offered flows/s (x capacity)", "flows", "dropped %",
                      f"dropped % (min-max of {args.repeats})", "benign flagged %", "attacks missed %",
                      "total loss %"], rows)
    broke = "; ".join(f"{s:.0%} attacks: from {r:,.0f} flows/s" for s, r in breaks.items()) or "never, at these rates"
    text = (f"Detector: {artifact.folder} ({artifact.spec['role']}, ONNX Runtime, {args.threads} model thread(s) + "
            f"the reader thread), queue {args.queue:,}, batches up to {args.batch_size}; {machine()}.\n"
            f"Capacity (KDDTest+ read as fast as it goes, blocking queue, median of 3): {capacity:,.0f} flows/s "
            f"(parse + encode + score). Each level replayed {args.repeats} times on the same stream; columns "
            f"are medians. The median drop is above zero: {broke}. Curves: `loss.png`.\n\n{table}\n")
    from mstr import plots

    plots.traffic_loss(levels, args.out / "loss.png", f"traffic loss of {artifact.folder.name} under attack, "
                       f"capacity {capacity:,.0f} flows/s")
    write_report(args.out, "loss", text)
