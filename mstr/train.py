"""`python -m mstr.train [overrides]`: train a teacher, a student, or a student distilled from a teacher.

Examples:
    python -m mstr.train                                   # distilled student on the embedded traffic
    python -m mstr.train model=student distill.temperature=4
    python -m mstr.train model=teacher                     # the teacher alone
    python -m mstr.train distill=none                      # the student without distillation
    python -m mstr.train -m distill.temperature=2,4,8      # a sweep (one output dir per job)
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mstr.config import config_dir, register_resolvers, validate
from mstr.errors import MstrError, report_and_exit
from mstr.preflight import preflight

log = logging.getLogger("mstr.train")
register_resolvers()
# Noise from Lightning internals that users cannot act on.
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def run(cfg: DictConfig) -> dict:
    """Everything one job does; returns the flattened final metrics (also in `metrics.json`)."""
    validate(cfg)
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mstr.outputs import print_table, write_json
    from mstr.training import runner

    out_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = instantiate(cfg.data)
    dm.setup()
    log.info("data %s: %d features, classes %s, window %d", cfg.data.name, dm.num_features, dm.class_names, dm.window)

    metrics: dict = {"seed": int(cfg.seed)}
    teacher = None
    distilling = cfg.model.role == "student" and cfg.distill.method != "none"
    if cfg.model.role == "teacher" and cfg.distill.method != "none":
        log.info("model=teacher trains the teacher alone: the distill settings do not apply")
    if distilling:
        teacher, source, _ = runner.obtain_teacher(cfg, dm, out_dir)
        teacher_results, _ = runner.test_metrics(teacher, dm) if cfg.test else ({}, 0.0)
        metrics.update({f"teacher/{k}": v for k, v in teacher_results.items()})
        metrics.update({f"teacher/model/{k}": v for k, v in teacher.cost(dm.window).items()})
        metrics["teacher/source"] = source
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the student starts the same either way

    module = runner.build_module(cfg.model, cfg.loss, dm, teacher, cfg.distill if distilling else None)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer = runner.build_trainer(cfg.trainer, cfg.callbacks, loggers, out_dir / "checkpoints")
        ckpt_path = str(out_dir / "checkpoints" / "last.ckpt") if cfg.ckpt_path == "last" else cfg.ckpt_path
        if cfg.ckpt_path == "last" and not Path(ckpt_path).is_file():
            raise MstrError(f"ckpt_path=last: no {ckpt_path}; set hydra.run.dir to the run dir to resume")
        metrics["time/train_s"] = runner.fit(module, dm, trainer, ckpt_path)
        final = runner.final_model(trainer, module)
        metrics.update({f"model/{k}": v for k, v in final.cost(dm.window).items()})
        metrics.update({f"val/{k}_best": v for k, v in module.val_best.items()})
        if cfg.test:
            results, metrics["time/test_s"] = runner.test_metrics(final, dm)
            metrics.update(results)
        metrics.update({f"audit/{k}": v for k, v in dm.audit.items()})
        metrics["best_checkpoint"] = runner.best_checkpoint(trainer) or ""
        for lg in loggers:
            lg.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))
                            and not isinstance(v, bool)}, step=trainer.global_step)
    finally:
        for lg in loggers:
            if type(lg).__name__ == "WandbLogger":
                import wandb

                wandb.finish()  # one W&B run per job, also under multirun
    write_json(out_dir / "metrics.json", metrics)
    print_table({k: v for k, v in metrics.items() if not k.startswith("audit/")},
                f"{cfg.model.role} on {cfg.data.name} -> {out_dir / 'metrics.json'}")
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except MstrError as err:
        report_and_exit(err)


def main() -> None:
    try:
        preflight(sys.argv[1:], "train")
    except MstrError as err:
        report_and_exit(err)
    _hydra_main()


if __name__ == "__main__":
    main()
