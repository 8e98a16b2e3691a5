"""`python -m mstr.train [overrides]`: train a teacher, a student, or a student distilled from a teacher.

Examples:
    python -m mstr.train                                   # distilled student on the embedded traffic
    python -m mstr.train model=student distill.temperature=4
    python -m mstr.train model=teacher                     # the teacher alone
    python -m mstr.train distill=none                      # the student without distillation
    python -m mstr.train -m distill.temperature=2,4,8      # a sweep (one output dir per job)
    python -m mstr.train resume=auto                       # continue the newest unfinished run of this config
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
import warnings
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from mstr.config import config_dir, register_resolvers, validate
from mstr.errors import ConfigError, Interrupted, MstrError, report_and_exit, report_interrupt
from mstr.preflight import is_multirun, preflight
from mstr.training.distributed import is_rank_zero, job_command_line

log = logging.getLogger("mstr.train")
register_resolvers()
# Noise from Lightning internals that users cannot act on.
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# Our loaders are resumable mid-epoch (LastCheckpoint + FlowDataModule.resume_train_at), Lightning cannot tell.
warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
# A resumed run continues in its own dir: its checkpoints and csv history are expected there (and kept).
warnings.filterwarnings("ignore", message=".*exists and is not empty.*")


def run(cfg: DictConfig) -> dict:
    """Everything one job does; returns the flattened final metrics (also in `metrics.json`).

    With `resume=auto` or `ckpt_path=last` it continues the run in `paths.output_dir` from its last
    checkpoint (the teacher's, then the model's); a run that already finished is reported as it is.
    """
    validate(cfg)
    from mstr.outputs import CONFIG_KEY_FILE, RunLock, config_key, print_table, resume_checkpoints
    from mstr.training.checkpoint import STOP

    out_dir = Path(cfg.paths.output_dir)
    resume = cfg.get("resume", "never") == "auto" or cfg.ckpt_path == "last"
    if not is_rank_zero():  # a DDP rank > 0 trains alongside rank zero, which owns the run dir
        with STOP.active():
            return _run(cfg, out_dir, resume)
    with RunLock(out_dir), STOP.active(), job_command_line():
        done = out_dir / "metrics.json"
        if resume and done.is_file():
            metrics = json.loads(done.read_text())
            log.info("%s finished before: nothing to resume", out_dir)
            print_table(metrics, f"finished run -> {done}")
            return metrics
        if cfg.ckpt_path == "last" and not resume_checkpoints(out_dir):
            raise MstrError(f"ckpt_path=last: {out_dir} holds no checkpoints/last.ckpt (nor teacher/checkpoints/"
                            "last.ckpt) to resume; use resume=auto to start the run when there is none")
        (out_dir / CONFIG_KEY_FILE).write_text(config_key(cfg) + "\n")
        return _run(cfg, out_dir, resume)


def _run(cfg: DictConfig, out_dir: Path, resume: bool) -> dict:
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mstr import tracking
    from mstr.outputs import continue_csv, print_table, write_json
    from mstr.training import runner
    from mstr.training.callbacks import throughput_metrics
    from mstr.training.checkpoint import check_resumable, read_checkpoint

    distilling = cfg.model.role == "student" and cfg.distill.method != "none"
    # Checkpoints given on the command line are read (safely) before any work.
    if distilling and cfg.distill.teacher_ckpt:
        read_checkpoint(cfg.distill.teacher_ckpt)
    ckpt_path, resume_step = None, None
    if cfg.ckpt_path not in (None, "last"):
        ckpt_path = str(cfg.ckpt_path)
    elif resume and (out_dir / "checkpoints" / "last.ckpt").is_file():
        ckpt_path = str(out_dir / "checkpoints" / "last.ckpt")
    if ckpt_path:
        step = int(read_checkpoint(ckpt_path).get("global_step", 0))
        resume_step = step if resume else None
    if resume:
        log.info("resuming %s", out_dir)

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = instantiate(cfg.data)
    dm.setup()
    log.info("data %s: %d features, classes %s, window %d", cfg.data.name, dm.num_features, dm.class_names, dm.window)

    metrics: dict = {"seed": int(cfg.seed)}
    teacher = None
    if cfg.model.role == "teacher" and cfg.distill.method != "none":
        log.info("model=teacher trains the teacher alone: the distill settings do not apply")
    if distilling:
        teacher, source, _ = runner.obtain_teacher(cfg, dm, out_dir, resume=resume)
        metrics.update({f"teacher/model/{k}": v for k, v in teacher.cost(dm.window).items()})
        metrics["teacher/source"] = source
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the student starts the same either way

    module = runner.build_module(cfg.model, cfg.loss, dm, teacher, cfg.distill if distilling else None)
    if ckpt_path:
        check_resumable(ckpt_path, module)
        log.info("resuming from %s", ckpt_path)
    loggers = [tracking.make_logger(c, cfg, out_dir) for c in (cfg.get("logger") or {}).values()
               if c and "_target_" in c]
    for lg in loggers if is_rank_zero() else ():
        continue_csv(lg, resume_step)
        tracking.log_config(lg, cfg)
    exit_code = 0
    try:
        trainer = runner.build_trainer(cfg.trainer, cfg.callbacks, loggers, out_dir / "checkpoints")
        metrics["time/train_s"] = runner.fit(module, dm, trainer, ckpt_path)
        metrics.update(throughput_metrics(trainer))
        if not trainer.is_global_zero:
            return metrics  # scoring and reports are rank zero's
        final = runner.final_model(trainer, module)
        metrics.update({f"model/{k}": v for k, v in final.cost(dm.window).items()})
        metrics.update({f"val/{k}_best": v for k, v in module.val_best.items()})
        device = trainer.strategy.root_device
        if cfg.test and teacher is not None:
            teacher_results, _ = runner.test_metrics(teacher, dm, device)
            metrics.update({f"teacher/{k}": v for k, v in teacher_results.items()})
        if cfg.test:
            results, metrics["time/test_s"] = runner.test_metrics(final, dm, device)
            metrics.update(results)
        if cfg.test and cfg.novelty.fpr > 0:
            metrics.update(_novelty_metrics(final, dm, float(cfg.novelty.fpr), out_dir))
        if teacher is not None:
            from mstr.training.compression import compression_metrics

            metrics.update(compression_metrics(teacher, final.model, dm.window, metrics))
        metrics.update(dm.facts)
        metrics.update({f"audit/{k}": v for k, v in dm.audit.items()})
        metrics["best_checkpoint"] = runner.best_checkpoint(trainer) or ""
        for lg in loggers:
            tracking.log_final(lg, metrics, trainer.global_step)
    except BaseException as err:
        exit_code = err.exit_code if isinstance(err, Interrupted) else 1
        raise
    finally:
        for lg in loggers:
            if tracking.is_wandb(lg):
                import wandb

                wandb.finish(exit_code=exit_code)  # one W&B run per job, also under multirun
    write_json(out_dir / "metrics.json", metrics)
    print_table(metrics, f"{cfg.model.role} on {cfg.data.name} -> {out_dir / 'metrics.json'}")
    return metrics


def _novelty_metrics(final, dm, fpr: float, out_dir: Path) -> dict:
    """The classifier with a novelty gate beside it, scored like the classifier (novelty/test/...);
    the gate's weights go to <run>/novelty_gate.pt."""
    import torch

    from mstr.models.novelty import GatedDetector
    from mstr.training import runner
    from mstr.training.novelty import fit_gate

    if dm.num_classes != 2:
        log.info("novelty gate: binary task only; skipped for %d classes", dm.num_classes)
        return {}
    gate = fit_gate(dm, fpr)
    results, _ = runner.test_metrics(GatedDetector(final.model, gate), dm)
    torch.save(gate.state_dict(), out_dir / "novelty_gate.pt")
    columns = len(gate.columns)
    return {**{f"novelty/{k}": v for k, v in results.items()}, "novelty/fpr": fpr,
            "novelty/threshold": float(gate.threshold), "novelty/macs": columns * columns + columns}


# ---- the command line -------------------------------------------------------------------------
_HYDRA_SAFE = re.compile(r"^[\w/.\-:+@]+$")


def _override_value(path: str) -> str:
    """A path as a Hydra override value (quoted when it holds characters the override grammar parses)."""
    if _HYDRA_SAFE.match(path):
        return path
    return "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _key_of(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("+~")


def _locate_resume(argv: list[str], cfg: Optional[DictConfig]) -> list[str]:
    """`resume=auto` / `ckpt_path=last` without a run dir: use the newest unfinished run dir of this config
    (under `<paths.log_dir>/<task_name>/runs/`), by adding `hydra.run.dir=<it>` to the command line."""
    if cfg is None:
        return argv
    wants = cfg.get("resume") == "auto" or cfg.get("ckpt_path") == "last"
    keys = {_key_of(arg) for arg in argv}
    if not wants:
        return argv
    if is_multirun(argv):
        if cfg.get("ckpt_path") == "last" and "hydra.sweep.dir" not in keys:
            raise ConfigError("ckpt_path=last under -m: give hydra.sweep.dir=<the sweep's dir> (and prefer "
                              "resume=auto, which also starts the jobs that never ran)")
        return argv
    if "hydra.run.dir" in keys:
        return argv
    from mstr.outputs import config_key, find_resumable

    runs = Path(str(cfg.paths.log_dir)) / str(cfg.task_name) / "runs"
    found = find_resumable(runs, config_key(cfg))
    if found is not None:
        return [*argv, f"hydra.run.dir={_override_value(str(found))}"]
    if cfg.get("ckpt_path") == "last":
        raise ConfigError(f"ckpt_path=last: no unfinished run of this config with a last checkpoint under {runs}; "
                          "give its dir as hydra.run.dir=<run dir>, or use resume=auto to start one")
    return argv


def _resume_command(argv: list[str]) -> str:
    """The command that continues this job: the same arguments, resume=auto, and its run (or sweep) dir."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    args = [a for a in argv if _key_of(a) not in ("resume", "ckpt_path", "hydra.run.dir", "hydra.sweep.dir")]
    if hc.mode == RunMode.MULTIRUN:
        where = f"hydra.sweep.dir={_override_value(str(Path(hc.sweep.dir).resolve()))}"
    else:
        where = f"hydra.run.dir={_override_value(str(Path(hc.runtime.output_dir).resolve()))}"
    return shlex.join(["python", "-m", "mstr.train", *args, "resume=auto", where])


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    from mstr import multirun

    sweeping = multirun.in_multirun()
    if sweeping:
        multirun.start_job(cfg)
    try:
        run(cfg)
    except Interrupted as err:
        report_interrupt(err, _resume_command(sys.argv[1:]))
    except Exception as err:
        if sweeping:
            multirun.job_failed(cfg, err)  # recorded in its dir; the other jobs go on
        elif isinstance(err, MstrError):
            report_and_exit(err)
        else:
            raise


def _check_checkpoint_files(cfg: Optional[DictConfig]) -> None:
    """Checkpoints named on the command line are read safely before Hydra starts: a file that is not a
    plain-data checkpoint (e.g. one carrying a pickle payload) fails here, before any output dir exists."""
    if cfg is None:
        return
    from mstr.training.safeload import load_weights_only

    for key in ("distill.teacher_ckpt", "ckpt_path"):
        value = OmegaConf.select(cfg, key)
        if value not in (None, "last"):
            load_weights_only(value)


def main() -> None:
    try:
        cfg = preflight(sys.argv[1:], "train")
        _check_checkpoint_files(cfg)
        sys.argv[1:] = _locate_resume(sys.argv[1:], cfg)
    except MstrError as err:
        report_and_exit(err)
    _hydra_main()
    from mstr.multirun import failure_report

    failed = failure_report()
    if failed is not None:
        print(f"error: {failed[0]}", file=sys.stderr, flush=True)
        sys.exit(failed[1])


if __name__ == "__main__":
    main()
