"""A training job (`python -m mstr.train`, and every run of a benchmark or search): data, teacher when
distilling, the model, test metrics, `metrics.json`; resumable from the run dir's last checkpoints."""

from __future__ import annotations

import json
import logging
import warnings
from functools import partial
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mstr.config import check_backbones, register_resolvers, validate
from mstr.errors import Interrupted, MstrError

log = logging.getLogger("mstr.train")
register_resolvers()
# Noise from Lightning internals that users cannot act on.
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# Our loaders are resumable mid-epoch (LastCheckpoint + FlowDataModule.resume_train_at), Lightning cannot tell.
warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
# A resumed run continues in its own dir: its checkpoints and csv history are expected there (and kept).
warnings.filterwarnings("ignore", message=".*exists and is not empty.*")


class _LightningNotes(logging.Filter):
    """Lightning's tips for its cloud services, and its note that `limit_*_batches=1.0` (our trainer
    configs' explicit default) uses 100% of the batches: printed on every fit, nothing to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("💡 Tip") or "=1.0)` was configured so 100%" in message)


for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_LightningNotes())


def run(cfg: DictConfig) -> dict:
    """Everything one job does; returns the flattened final metrics (also in `metrics.json`).

    With `resume=auto` or `ckpt_path=last` it continues the run in `paths.output_dir` from its last
    checkpoint (the teacher's, then the model's); a run that already finished is reported as it is.
    """
    validate(cfg)
    from mstr.jobs.multirun import job_command_line
    from mstr.jobs.report import print_table
    from mstr.jobs.rundir import CONFIG_KEY_FILE, RunLock, config_key, resume_checkpoints
    from mstr.training.distributed import is_rank_zero
    from mstr.training.signals import STOP

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
            print_table(metrics, "finished run", done)
            return metrics
        if cfg.ckpt_path == "last" and not resume_checkpoints(out_dir):
            raise MstrError(f"ckpt_path=last: {out_dir} holds no checkpoints/last.ckpt (nor teacher/checkpoints/"
                            "last.ckpt) to resume; use resume=auto to start the run when there is none")
        (out_dir / CONFIG_KEY_FILE).write_text(config_key(cfg) + "\n")
        save_run_config(cfg, out_dir)
        return _run(cfg, out_dir, resume)


def save_run_config(cfg: DictConfig, out_dir: Path) -> None:
    """The composed config in `<run>/.hydra/config.yaml`, where Hydra puts it, when Hydra did not: a run
    whose `paths.output_dir` is set elsewhere (a benchmark's, a script's). Export, evaluation and
    `mstr.compare` read a run's data and hyperparameters from there."""
    from omegaconf import OmegaConf

    path = out_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, path)


def is_distilling(cfg: DictConfig) -> bool:
    """Whether the job trains a student from a teacher."""
    return cfg.model.role == "student" and cfg.distill.method != "none"


def checkpoint_to_continue(cfg: DictConfig, ckpt_path: str) -> dict:
    """The checkpoint a run continues from, read safely and refused unless the config's model settings
    (role, backbone, optimiser, loss, distillation) and epochs are its own: before the data is read and
    a teacher trained. The data's part is checked once it is loaded (`check_resumable`)."""
    from mstr.training.checkpoint import read_checkpoint
    from mstr.training.signature import check_resumable_config

    ckpt = read_checkpoint(ckpt_path)
    plain = partial(OmegaConf.to_container, resolve=True)
    check_resumable_config(ckpt_path, ckpt, cfg.model.role, plain(cfg.model.backbone), plain(cfg.model.optim),
                           plain(cfg.loss), plain(cfg.distill) if is_distilling(cfg) else None,
                           cfg.trainer.max_epochs)
    return ckpt


def _run(cfg: DictConfig, out_dir: Path, resume: bool) -> dict:
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mstr.jobs import tracking
    from mstr.jobs.loggers import csv_logger, make_loggers
    from mstr.jobs.report import print_table, write_json
    from mstr.training import runner
    from mstr.training.callbacks import earlier_fit_s, throughput_metrics
    from mstr.training.checkpoint import read_checkpoint
    from mstr.training.signature import check_resumable

    distilling = is_distilling(cfg)
    # Checkpoints given on the command line are read (safely) before any work.
    if distilling and cfg.distill.teacher_ckpt:
        read_checkpoint(cfg.distill.teacher_ckpt)
    ckpt_path, resume_step = None, None
    if cfg.ckpt_path not in (None, "last"):
        ckpt_path = str(cfg.ckpt_path)
    elif resume and (out_dir / "checkpoints" / "last.ckpt").is_file():
        ckpt_path = str(out_dir / "checkpoints" / "last.ckpt")
    if ckpt_path:
        ckpt = checkpoint_to_continue(cfg, ckpt_path)
        resume_step = int(ckpt.get("global_step", 0)) if resume else None
    if resume:
        log.info("resuming %s", out_dir)

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = instantiate(cfg.data)
    dm.setup()
    if dm.window != cfg.data.window:  # rows without time order: windows of one flow, which the models must fit
        check_backbones(cfg, cfg.distill.method if distilling else "none", dm.window)
    log.info("data %s: %d features, classes %s, window %d", cfg.data.name, dm.num_features, dm.class_names, dm.window)

    metrics: dict = {"seed": int(cfg.seed)}
    teacher = None
    if cfg.model.role == "teacher" and cfg.distill.method != "none":
        log.info("model=teacher trains the teacher alone: the distill settings do not apply")
    if distilling:
        teacher_dir = out_dir / "teacher"
        teacher, source, _ = runner.obtain_teacher(cfg, dm, teacher_dir, Path(cfg.paths.teacher_cache_dir),
                                                   lambda step: [csv_logger(teacher_dir, step)], resume=resume)
        metrics.update({f"teacher/model/{k}": v for k, v in teacher.cost(dm.window).items()})
        # a path (a cached teacher's may be relative to where the run started): absolute, to open it later
        metrics["teacher/source"] = str(Path(source).resolve()) if Path(source).is_file() else source
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the student starts the same either way

    module = runner.build_module(cfg.model, cfg.loss, dm, teacher, cfg.distill if distilling else None)
    if ckpt_path:
        check_resumable(ckpt_path, module)
        log.info("resuming from %s", ckpt_path)
    loggers = make_loggers(cfg, out_dir, resume_step)
    exit_code = 0
    try:
        trainer = runner.build_trainer(cfg.trainer, cfg.callbacks, loggers, out_dir / "checkpoints")
        # a resumed run's time is that of all its stretches (the callback's state in the checkpoint)
        metrics["time/train_s"] = runner.fit(module, dm, trainer, ckpt_path) + earlier_fit_s(trainer)
        metrics.update(throughput_metrics(trainer))
        if teacher is not None:
            # inside the fit: the teacher's logits on every training window, computed once (teacher cost)
            metrics["time/teacher_targets_s"] = module.teacher_targets_s
        if not trainer.is_global_zero:
            return metrics  # scoring and reports are rank zero's
        final = runner.final_model(trainer, module)
        metrics.update({f"model/{k}": v for k, v in final.cost(dm.window).items()})
        metrics.update({f"val/{k}_best": v for k, v in module.val_best.items()})
        device = trainer.strategy.root_device
        metrics.update(runner.unseen_type_metrics(final, dm, device))
        if cfg.test and teacher is not None:
            teacher_results = runner.test_metrics(teacher, dm, device)[0]
            metrics.update({f"teacher/{k}": v for k, v in teacher_results.items()})
        scored = None
        if cfg.test:
            results, metrics["time/test_s"], scored = runner.test_metrics(final, dm, device)
            metrics.update(results)
        if cfg.novelty.fpr > 0:
            metrics.update(_novelty_metrics(final, dm, float(cfg.novelty.fpr), out_dir, scored=cfg.test))
        if teacher is not None:
            from mstr.training.compression import compression_metrics

            metrics.update(compression_metrics(teacher, final.model, dm.window, metrics))
        metrics.update(dm.facts)
        metrics.update({f"audit/{k}": v for k, v in dm.audit.items()})
        metrics["best_checkpoint"] = runner.best_checkpoint(trainer) or ""
        images = _write_plots(cfg, out_dir, scored, dm.class_names) if cfg.plots else []
        for lg in loggers:
            tracking.log_final(lg, metrics, trainer.global_step, images)
    except BaseException as err:
        exit_code = err.exit_code if isinstance(err, Interrupted) else 1
        raise
    finally:
        tracking.finish_wandb(loggers, exit_code)
    write_json(out_dir / "metrics.json", metrics)
    print_table(metrics, f"{cfg.model.role} on {cfg.data.name}", out_dir / "metrics.json")
    return metrics


def _write_plots(cfg: DictConfig, out_dir: Path, scored, classes: list[str]) -> list[Path]:
    """curves.png from the run's csv history (and the teacher's, teacher/curves.png), and the test's
    per-class report and plots (as mstr.evaluate writes them); returns the PNGs written. Before
    metrics.json, so a run that has metrics.json has them."""
    from mstr import plots
    from mstr.class_report import write_reports
    from mstr.jobs.loggers import epoch_history

    selection = cfg.callbacks.get("model_checkpoint") or {}
    monitor, mode = selection.get("monitor", "val/f1"), selection.get("mode", "max")
    # the teacher trained on the way keeps a csv history of its own (one from the cache has none here)
    for folder, title in ((out_dir, cfg.model.role), (out_dir / "teacher", "teacher")):
        history = epoch_history(folder / "csv" / "metrics.csv")
        if history is not None:
            plots.learning_curves(history, folder / "curves.png", f"{title} on {cfg.data.name}", monitor, mode)
        elif folder == out_dir:
            log.info("no curves.png: the run kept no csv history (keep one beside W&B: 'logger=[csv,wandb]')")
    if scored is not None:
        write_reports({"0.5": scored}, classes, out_dir)
    return sorted(out_dir.glob("*.png")) + sorted((out_dir / "teacher").glob("*.png"))


def _novelty_metrics(final, dm, fpr: float, out_dir: Path, scored: bool) -> dict:
    """A novelty gate fit beside the classifier (its weights in <run>/novelty_gate.pt, with or without a
    test), and with `scored` the two together scored like the classifier (novelty/test/...)."""
    import torch

    from mstr.models.novelty import GatedDetector
    from mstr.training import runner
    from mstr.training.novelty import fit_gate

    if dm.num_classes != 2:  # `experiment=nsl_kdd data.task=multiclass`: the experiment's gate, not the user's ask
        log.warning("novelty.fpr=%s: the novelty gate flags \"attack\", not which one, so a run of %d classes goes "
                    "without it (set novelty.fpr=0 to say so)", fpr, dm.num_classes)
        return {}
    gate = fit_gate(dm, fpr)
    torch.save(gate.state_dict(), out_dir / "novelty_gate.pt")
    results = runner.test_metrics(GatedDetector(final.model, gate), dm)[0] if scored else {}
    columns = len(gate.columns)
    return {**{f"novelty/{k}": v for k, v in results.items()}, "novelty/fpr": fpr,
            "novelty/threshold": float(gate.threshold), "novelty/macs": columns * columns + columns}
