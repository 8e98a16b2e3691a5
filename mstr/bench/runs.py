"""Running a matrix of training jobs for the benchmarks: (dataset, variant, seed) -> metrics.

Each job runs the training job (`mstr.jobs.train.run`, what `python -m mstr.train` runs) in this process, with its outputs under
`<out>/runs/<dataset>/<variant>/seed<k>/`. A finished job's metrics.json is reused when the same job
(same overrides and composed config) is asked again, so `bench accuracy` and `bench distill` share their common runs and an
interrupted benchmark resumes where it stopped. Teachers are cached per (dataset, seed) under
`<out>/teachers/`: every distilled student of a seed learns from the same teacher.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mstr.config import compose_config
from mstr.jobs.report import write_json

log = logging.getLogger("mstr.bench")


# What each benchmark dataset name trains on: the dataset's experiment config (its recommended
# settings), so a table row is what `python -m mstr.train experiment=<name>` gives.
DATASETS = {
    "nsl_kdd": ("experiment=nsl_kdd",),
    "unsw_nb15": ("experiment=unsw_nb15",),
    "cic_ids2017": ("experiment=cic_ids2017",),
    "cic_ids2017_multiclass": ("experiment=cic_ids2017_multiclass",),
    "synthetic": ("data=synthetic",),
}


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]


def run_job(out: Path, dataset: str, variant: Variant, seed: int, common: list[str]) -> dict:
    run_dir = out / "runs" / dataset / run_dirname(variant.name) / f"seed{seed}"
    overrides = [*DATASETS[dataset], f"seed={seed}", *common, *variant.overrides,
                 f"paths.output_dir={run_dir}", f"paths.teacher_cache_dir={out / 'teachers'}"]
    from mstr.jobs.rundir import config_key

    cfg = compose_config("train", overrides)
    job = {"overrides": overrides, "config": config_key(cfg)}
    done, spec = run_dir / "metrics.json", run_dir / "bench_overrides.json"
    if done.is_file() and spec.is_file() and _same_job(json.loads(spec.read_text()), job):
        log.info("reusing %s", run_dir)
        return json.loads(done.read_text())
    from mstr.jobs.train import run

    log.info("bench job: %s / %s / seed %d", dataset, variant.name, seed)
    metrics = run(cfg)  # writes run_dir/metrics.json
    write_json(spec, job)
    return metrics


def _same_job(stored, job: dict) -> bool:
    """A finished run is reused only for the same overrides and the same composed config (an edited
    config file makes another job); runs recorded with their overrides alone compare on those."""
    if isinstance(stored, list):
        return stored == job["overrides"]
    return stored == job


def run_dirname(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def run_matrix(out: Path, datasets: Iterable[str], variants: list[Variant], seeds: Iterable[int],
               common: list[str]) -> dict:
    """{dataset: {variant: [metrics per seed]}}."""
    results: dict = {dataset: {v.name: [] for v in variants} for dataset in datasets}
    for seed in seeds:  # seed-major: one complete table first, then more seeds
        for dataset in datasets:
            for variant in variants:
                results[dataset][variant.name].append(run_job(out, dataset, variant, seed, common))
    return results


def mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1:  # one seed has no spread: not a measured ± 0
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {statistics.stdev(values):.4f}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


class HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows each option's default, except where there is none to show (None: the help says
    what decides it, e.g. the experiment's epochs)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action) if action.help else "(default: %(default)s)"


