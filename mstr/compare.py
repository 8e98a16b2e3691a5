"""`python -m mstr.compare DIR... [--metric val/f1_best] [--minimize] [--out DIR]`: compare runs without a
tracking server.

Each DIR is a run dir (`metrics.json` + `.hydra/config.yaml`), a multirun dir (`-m`: one job dir
each) or a sweep dir (`mstr.sweep`: `<out>/<study>`); dirs are searched for run dirs below them.
Writes to `<out>/compare/` (default: the DIR, or the common folder of several) and prints:
  runs.md, runs.csv   every run, sorted by the metric, with the hyperparameters that vary between
                      runs and the main results (failed or unfinished runs last, with their status)
  <metric>_vs_<hyperparameter>.png   one per varied hyperparameter
  parallel_coordinates.png           every varied hyperparameter and the metric, a line per run
  teacher_vs_student.png             distilled runs: the teacher's test metric against the student's
  <metric>_per_epoch.png             the metric per epoch, a line per run (runs with a csv history)
A `mstr.baselines` dir gives one row per peer model (`<dir>/<model>`).
Sorting by a validation metric (the default) is model selection; test columns are reported, not chosen on.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

from mstr.cli_args import ArgumentParser
from mstr.errors import ConfigError, DataError, MstrError, one_line, report_and_exit
from mstr.jobs.tracking import flat

RESULT_COLUMNS = ("test/f1", "test/acc", "teacher/test/f1", "model/params", "time/train_s", "time/train_windows_per_s")
# never hyperparameters: where things are written, how a run was resumed, its W&B grouping
IGNORED = ("paths.", "hydra.", "resume", "ckpt_path", "group", "tags", "logger.", "callbacks.optuna_pruning.")


def find_runs(dirs: list[Path]) -> list[Path]:
    """Run dirs at or below each of `dirs` (a run dir holds .hydra/config.yaml), in order, once each."""
    found: list[Path] = []
    for top in dirs:
        if not top.is_dir():
            what = "is a file, not a directory" if top.exists() else "no such directory"
            raise ConfigError(f"{top}: {what} (give run, multirun or sweep dirs)")
        below = sorted({p.parent.parent for p in top.glob("**/.hydra/config.yaml")} - set(found),
                       key=lambda p: str(p))
        found.extend(p for p in below if "compare" not in p.relative_to(top).parts)
    return found


def _mapping(path: Path, parse) -> dict:
    """A file's content, parsed to a dict ({} when empty), or a DataError naming the file."""
    try:
        value = parse(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)  # YAML: what and where, not the quoted text
        reason = (f"{err.problem}, line {mark.line + 1}" if mark is not None and getattr(err, "problem", None)
                  else one_line(err))
        raise DataError(f"{path}: cannot be parsed ({reason[:200]})") from None
    if value is not None and not isinstance(value, dict):
        raise DataError(f"{path}: cannot be parsed (a {type(value).__name__}, not a mapping)")
    return value or {}


def read_run(run_dir: Path) -> dict:
    """{"dir", "status" (finished | failed: <error> | pruned: <when> | unfinished | unreadable: <file>),
    "config" (flat, interpolations resolved), "derived" (the keys set by interpolation), "metrics"}. A config that cannot be read is a DataError (the caller skips the run); a metrics.json
    or job_error.json that cannot be read lists the run as unreadable, with a warning."""
    config = _mapping(run_dir / ".hydra" / "config.yaml", yaml.safe_load)
    metrics: dict = {}
    try:
        if (run_dir / "metrics.json").is_file():
            metrics, status = _mapping(run_dir / "metrics.json", json.loads), "finished"
        elif (run_dir / "job_error.json").is_file():
            status = "failed: " + str(_mapping(run_dir / "job_error.json", json.loads).get("error", ""))
        elif (run_dir / "pruned.json").is_file():  # a sweep trial its pruner stopped (mstr.sweep)
            status = "pruned: " + str(_mapping(run_dir / "pruned.json", json.loads).get("pruned", ""))
        else:
            status = "unfinished"
    except DataError as err:
        status = f"unreadable: {err}"
        print(f"warning: {err}; the run is listed as unreadable", file=sys.stderr)
    derived = {key for key, value in flat(config).items() if isinstance(value, str) and "${" in value}
    return {"dir": run_dir, "status": status, "config": _resolved(config), "derived": derived, "metrics": metrics}


def peer_rows(run: dict) -> list[dict]:
    """A `mstr.baselines` job as one row per peer (`<dir>/<model>`, its `<model>/test/f1`, ... as `test/f1`,
    ...), so that the peers stand beside the networks they were fitted for; any other run as it is. A
    job's metrics carry every peer's prefix, so as one row it showed none of its results."""
    models = run["config"].get("baselines.models")
    models = [models] if isinstance(models, str) else models  # `baselines.models=majority` is a list of one
    if run["config"].get("task_name") != "baselines" or not run["metrics"] or not isinstance(models, list):
        return [run]
    shared = {k: v for k, v in run["metrics"].items() if k.split("/")[0] not in models}  # data/..., audit/...
    return [{**run, "dir": run["dir"] / model, "config": {**run["config"], "baselines.models": model},
             "metrics": {**shared, **{k[len(model) + 1:]: v for k, v in run["metrics"].items()
                                      if k.startswith(f"{model}/")}}}
            for model in models]


def _resolved(config: dict) -> dict:
    """The flat config with its interpolations (`${trainer.max_epochs}`) as the run resolved them,
    where they resolve outside the run (not `${hydra:...}`: those stay as written)."""
    from omegaconf import OmegaConf

    raw = flat(config)
    try:
        tree = OmegaConf.create(config)
    except Exception:  # not a config OmegaConf takes: shown as written
        return raw
    resolved = {}
    for key, value in raw.items():
        if isinstance(value, str) and "${" in value:
            try:
                found = OmegaConf.select(tree, key, throw_on_resolution_failure=True)
            except Exception:
                found = None
            value = value if found is None else OmegaConf.to_container(found, resolve=True) \
                if OmegaConf.is_config(found) else found
        resolved[key] = value
    return resolved


def varied(runs: list[dict]) -> list[str]:
    """Config keys whose values differ between the runs that have them. A key only some runs have
    comes with a group choice that differs (`distill=none` has no `distill.temperature`): the choice
    is the varied key, not every key of the group. Keys set by interpolation (`${paths.output_dir}/...`,
    `${trainer.max_epochs}`) vary with their source, which is listed if it is a hyperparameter; one set
    by hand in some runs (`distill.teacher_max_epochs=2`) is listed, with the value the others resolved."""
    keys = sorted({k for run in runs for k in run["config"]})
    out = []
    for key in keys:
        if any(key.startswith(prefix) or key == prefix for prefix in IGNORED) or key.endswith(("._target_", "._partial_")):
            continue  # which class a config builds follows its group choice (data.name, model.role)
        having = [run for run in runs if key in run["config"]]
        if all(key in run.get("derived", ()) for run in having):  # `${...}` of another key: varies with it
            continue
        values = {json.dumps(run["config"][key], sort_keys=True, default=str) for run in runs if key in run["config"]}
        if len(values) > 1:
            out.append(key)
    return out


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def ranked(runs: list[dict], metric: str, minimize: bool) -> list[dict]:
    """Finished runs with the metric first, best first; the rest after, in their order."""
    scored = [r for r in runs if _number(r["metrics"].get(metric)) is not None]
    scored.sort(key=lambda r: r["metrics"][metric], reverse=not minimize)
    return scored + [r for r in runs if r not in scored]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1e5:
        return f"{value:,}"
    return str(value) if not isinstance(value, (list, dict)) else json.dumps(value)


def table(runs: list[dict], metric: str, params: list[str], root: Path) -> tuple[list[str], list[list[Any]]]:
    results = [c for c in RESULT_COLUMNS if c != metric and any(c in r["metrics"] for r in runs)]
    header = ["run", metric, *params, *results, "status"]
    rows = []
    for run in runs:
        rows.append([_name(run, root), run["metrics"].get(metric),
                     *(_setting(run["config"].get(p)) for p in params),
                     *(run["metrics"].get(c) for c in results), run["status"]])
    return header, rows


def _name(run: dict, root: Path) -> str:
    """A run as the table and plots name it: its dir relative to the compared folder."""
    name = str(run["dir"].relative_to(root)) if run["dir"].is_relative_to(root) else str(run["dir"])
    return name if name != "." else run["dir"].name


def _setting(value: Any) -> Any:
    """A hyperparameter as it was set (2 and 4.0 alike as 2 and 4), not rounded like a metric."""
    return f"{value:g}" if isinstance(value, float) else value


def write_tables(out: Path, header: list[str], rows: list[list[Any]]) -> tuple[Path, Path, str]:
    import csv

    from mstr.bench.runs import markdown

    text = markdown(header, [[_cell(v) for v in row] for row in rows])
    (out / "runs.md").write_text(text + "\n")
    with (out / "runs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[("" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else v) for v in row]
                          for row in rows])
    return out / "runs.md", out / "runs.csv", text


# ---- plots ---------------------------------------------------------------------------------------
def _axis_values(values: list[Any]) -> tuple[list[float], Optional[list[str]]]:
    """Numbers as they are; anything else as category positions (with their labels)."""
    numbers = [_number(v) for v in values]
    if all(n is not None for n in numbers):
        return numbers, None
    labels = sorted({_cell(v) for v in values})
    return [float(labels.index(_cell(v))) for v in values], labels


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name)


def plot_metric_vs(out: Path, runs: list[dict], metric: str, param: str) -> Path:
    import matplotlib.pyplot as plt

    xs, labels = _axis_values([r["config"].get(param) for r in runs])
    ys = [r["metrics"][metric] for r in runs]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(xs, ys, s=40, color="tab:blue", zorder=3)
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels)
    elif min(xs) > 0 and max(xs) / min(xs) >= 20:
        ax.set_xscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {param} ({len(runs)} runs)")
    ax.grid(alpha=0.3)
    return _save(fig, out / f"{_safe(metric)}_vs_{_safe(param)}.png")


def plot_parallel(out: Path, runs: list[dict], metric: str, params: list[str], minimize: bool) -> Path:
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib import cm
    from matplotlib.colors import Normalize

    axes = [*params, metric]
    columns = []
    for key in axes:
        values = [r["metrics"][metric] if key == metric else r["config"].get(key) for r in runs]
        xs, labels = _axis_values(values)
        low, high = min(xs), max(xs)
        span = (high - low) or 1.0
        ticks = labels if labels is not None else [f"{low:.4g}", f"{high:.4g}"]
        columns.append(([(x - low) / span for x in xs], ticks))
    scores = [r["metrics"][metric] for r in runs]
    spread = max(scores) - min(scores)
    pad = 0.0 if spread > 0 else max(abs(min(scores)) * 0.01, 1e-3)  # all equal: one colour, a readable bar
    norm = Normalize(min(scores) - pad, max(scores) + pad)
    cmap = matplotlib.colormaps["viridis_r" if minimize else "viridis"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(axes) + 1.5), 4.2))
    for i, score in enumerate(scores):
        ax.plot(range(len(axes)), [col[0][i] for col in columns], color=cmap(norm(score)), lw=2, alpha=0.85)
    for j, (_, ticks) in enumerate(columns):
        ax.axvline(j, color="0.5", lw=0.8)
        positions = [k / max(len(ticks) - 1, 1) for k in range(len(ticks))]
        for pos, tick in zip(positions, ticks):
            ax.text(j + 0.04, pos, tick if len(tick) <= 18 else tick[:17] + "…", fontsize=8, va="center")
    ax.set_xticks(range(len(axes)), axes, rotation=15)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.6)
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)
    bar.formatter.set_useOffset(False)
    bar.update_ticks()
    ax.set_title(f"parallel coordinates ({len(runs)} runs)")
    return _save(fig, out / "parallel_coordinates.png")


def plot_curves(out: Path, runs: list[dict], metric: str, root: Path, minimize: bool,
                params: list[str]) -> Optional[Path]:
    """The metric per epoch (`val/f1` for `val/f1_best`), a line per run (named with its varied
    `params`), from each run's csv history: how the runs got where the table ranks them. None when
    no run kept a history of it."""
    import matplotlib.pyplot as plt

    from mstr.jobs.loggers import epoch_history

    per_epoch = metric.removesuffix("_best")
    curves = []
    for run in runs:
        history = epoch_history(run["dir"] / "csv" / "metrics.csv")
        if history is not None and per_epoch in history and history[per_epoch].notna().any():
            curves.append((run, history[per_epoch].dropna()))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for run, series in curves:
        settings = ", ".join(f"{p.rsplit('.', 1)[-1]}={_setting(run['config'].get(p))}" for p in params[:3])
        label = f"{_name(run, root)} ({settings})" if settings else _name(run, root)
        ax.plot(series.index, series.to_numpy(), marker="o", markersize=2.5, lw=1.2, label=label)
    last = max(int(series.index.max()) for _, series in curves)
    ax.set_xlim(-0.5, last + 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel(per_epoch)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{per_epoch} per epoch ({len(curves)} runs; {'lower' if minimize else 'higher'} is better)")
    if len(curves) <= 12:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out / f"{_safe(per_epoch)}_per_epoch.png")


def plot_teacher_student(out: Path, runs: list[dict], key: str, root: Path) -> Path:
    import matplotlib.pyplot as plt

    teacher = [r["metrics"][f"teacher/{key}"] for r in runs]
    student = [r["metrics"][key] for r in runs]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(teacher, student, s=40, color="tab:orange", zorder=3)
    for run, x, y in zip(runs, teacher, student):
        ax.annotate(_name(run, root), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    low = min(teacher + student)
    high = max(teacher + student)
    pad = (high - low) * 0.1 or 0.05
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="0.5", ls="--", lw=1, label="student = teacher")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel(f"teacher {key}")
    ax.set_ylabel(f"student {key}")
    ax.set_title(f"teacher vs student ({len(runs)} distilled runs)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out / "teacher_vs_student.png")


def compare(dirs: list[Path], metric: str = "val/f1_best", minimize: bool = False,
            out: Optional[Path] = None, teacher_metric: Optional[str] = None) -> dict:
    """Write the tables and plots; returns {"table": markdown, "files": [paths], "runs": n, "varied": [...]}.
    `teacher_metric` None: test/f1 where distilled runs have it (a sweep's trials score no test set)."""
    import matplotlib

    matplotlib.use("Agg")
    # names are relative to the dirs' common folder, and the outputs go there unless --out says
    root = dirs[0] if len(dirs) == 1 else Path(os.path.commonpath([d.resolve() for d in dirs]))
    dirs = dirs if len(dirs) == 1 else [d.resolve() for d in dirs]
    runs, skipped = [], []
    found = find_runs(dirs)
    for run_dir in found:
        try:
            runs.extend(peer_rows(read_run(run_dir)))
        except DataError as err:  # not a run we can describe: the others are compared
            skipped.append(err)
    if skipped and not runs:
        raise DataError(f"{skipped[0]}; fix or remove that run dir")
    for err in skipped:
        print(f"warning: {err}; the run is skipped", file=sys.stderr)
    if not runs:
        raise ConfigError(f"no runs under {', '.join(map(str, dirs))} (a run dir holds .hydra/config.yaml)")
    for top in dirs:  # a dir given beside others that holds no run: a wrong path, most likely
        if not any(d == top or top in d.parents for d in found):
            print(f"warning: {top}: no runs there (a run dir holds .hydra/config.yaml)", file=sys.stderr)
    # a metric no finished run has is a typo; with none finished (all failed, say) the table shows why
    if any(r["metrics"] for r in runs) and not any(metric in r["metrics"] for r in runs):
        raise ConfigError(f"--metric {metric}: no run has it in metrics.json (e.g. val/f1_best, test/f1)")
    # a --teacher-metric given that no distilled run has is a typo, refused before anything is written;
    # the default is only drawn where runs have it: trials of a sweep (test=false) have no teacher/test/f1
    teachers = [r for r in runs if any(k.startswith("teacher/") for k in r["metrics"])]
    if teacher_metric is not None and teachers and not any(f"teacher/{teacher_metric}" in r["metrics"] for r in teachers):
        raise ConfigError(f"--teacher-metric {teacher_metric}: no distilled run has teacher/{teacher_metric} in "
                          "metrics.json (e.g. test/f1, test/acc)")
    teacher_metric = teacher_metric or "test/f1"
    scored = [r for r in runs if _number(r["metrics"].get(metric)) is not None]  # NaN: in the table, not ranked
    runs = ranked(runs, metric, minimize)
    params = varied(runs)
    target = (out or root) / "compare"
    header, rows = table(runs, metric, params, root)
    try:
        target.mkdir(parents=True, exist_ok=True)
        md, csv_path, text = write_tables(target, header, rows)
    except OSError as err:
        raise ConfigError(f"{target}: cannot write there ({err.strerror or err}); give a writable --out DIR") from None
    files = [md, csv_path]
    plotted = varied(scored)  # what varies between the runs that have the metric
    files += [plot_metric_vs(target, scored, metric, p) for p in plotted]
    if plotted:
        files.append(plot_parallel(target, scored, metric, plotted, minimize))
    curves = plot_curves(target, runs, metric, root, minimize, params)
    if curves is not None:
        files.append(curves)
    distilled = [r for r in scored if _number(r["metrics"].get(f"teacher/{teacher_metric}")) is not None
                 and _number(r["metrics"].get(teacher_metric)) is not None]
    if distilled:
        files.append(plot_teacher_student(target, distilled, teacher_metric, root))
    return {"table": text, "files": files, "runs": len(runs), "varied": params}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m mstr.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run, multirun or sweep dirs")
    parser.add_argument("--metric", default="val/f1_best", help="sort key, a metrics.json name (default val/f1_best)")
    parser.add_argument("--minimize", action="store_true", help="lower is better (e.g. val/loss)")
    parser.add_argument("--teacher-metric", help="compared in teacher_vs_student.png (default test/f1, where runs have it)")
    parser.add_argument("--out", type=Path, help="write <out>/compare/ (default: the dir, or the common folder of several)")
    args = parser.parse_args(argv)
    try:
        result = compare(args.dirs, args.metric, args.minimize, args.out, args.teacher_metric)
    except MstrError as err:
        report_and_exit(err)
    try:
        print(result["table"])
        print(f"\n{result['runs']} run{'' if result['runs'] == 1 else 's'}; varied: {', '.join(result['varied']) or 'nothing'}")
        for path in result["files"]:
            print(f"wrote {path}")
        sys.stdout.flush()
    except BrokenPipeError:  # `| head` read what it wanted and left: the files are written, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else the exit's flush fails again
    return 0


if __name__ == "__main__":
    sys.exit(main())
