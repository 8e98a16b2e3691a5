"""Experiment trackers (Lightning loggers) of a training job, set up so that runs compare: W&B runs are
grouped per sweep or experiment, carry the full config flat (`data.window`, `distill.temperature`:
the Hydra override names, which W&B sweeps and parallel-coordinates plots use), and end with every
final metric in their summary. Checkpoints become W&B artifacts with `logger.wandb.log_model=true`
(Lightning's own upload of the ModelCheckpoint files).
"""

from __future__ import annotations

import os
import re
import secrets
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

WANDB_ID_FILE = "wandb_id.txt"
_SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)


def run_group(cfg: DictConfig) -> str:
    """`group` when set; else the W&B sweep, the Hydra multirun (its dir's name), the experiment, or
    `<data>-<role>`."""
    if cfg.get("group"):
        return str(cfg.group)
    if os.environ.get("WANDB_SWEEP_ID"):
        return f"wandb-sweep-{os.environ['WANDB_SWEEP_ID']}"
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return f"{cfg.task_name}-{Path(str(hydra_cfg.sweep.dir)).name}"
        experiment = hydra_cfg.runtime.choices.get("experiment")
        if experiment:
            return f"experiment-{experiment}"
    return f"{cfg.data.name}-{cfg.model.role}"


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": leaf}; lists stay values."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flat(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def is_wandb(logger: Any) -> bool:
    return type(logger).__name__ == "WandbLogger"


def make_logger(logger_cfg: DictConfig, cfg: DictConfig, out_dir: Path):
    from hydra.utils import instantiate

    if str(logger_cfg.get("_target_", "")).endswith("WandbLogger"):
        # The run id lives in the run dir, so a resumed job continues the same W&B run.
        run_id = logger_cfg.get("id") or wandb_run_id(out_dir)
        options = {"id": run_id, "resume": logger_cfg.get("resume") or "allow",
                   "group": logger_cfg.get("group") or run_group(cfg)}
        if logger_cfg.get("offline") and logger_cfg.get("log_model"):
            # Lightning refuses checkpoints with offline=True; an offline W&B run keeps them for `wandb sync`
            options.update(offline=False, mode="offline")
        return instantiate(logger_cfg, **options)
    return instantiate(logger_cfg)


def wandb_run_id(out_dir: Path) -> str:
    path = Path(out_dir) / WANDB_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # W&B's own format
    path.write_text(run_id + "\n")
    return run_id


def log_config(logger: Any, cfg: DictConfig) -> None:
    """The composed config, credentials redacted: flat for W&B, nested elsewhere (hparams.yaml)."""
    config = redact_secrets(OmegaConf.to_container(cfg, resolve=True))
    logger.log_hyperparams(flat(config) if is_wandb(logger) else config)


def log_final(logger: Any, metrics: dict, step: int, images: Sequence[Path] = ()) -> None:
    """The final metrics as the last logged step; in a W&B run's summary all of them, text included,
    and the run's plots as images (`plots/<name>`, e.g. `plots/confusion_matrix`, `plots/teacher_curves`)."""
    logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                       step=step)
    if is_wandb(logger):
        logger.experiment.summary.update(metrics)
        for path in images:
            name = path.stem if path.parent.name != "teacher" else f"teacher_{path.stem}"
            logger.log_image(key=f"plots/{name}", images=[str(path)], step=step)


def finish_wandb(loggers: list, exit_code: int) -> None:
    """One W&B run per job, also under multirun: close it with the job's exit code."""
    if any(is_wandb(lg) for lg in loggers):
        import wandb

        wandb.finish(exit_code=exit_code)


def secret_values() -> list[str]:
    """Values of environment variables that look like credentials (WANDB_API_KEY, *_TOKEN, ...)."""
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]


def redact_secrets(value: Any, secrets: Optional[list[str]] = None) -> Any:
    """`value` (nested dicts / lists) with every credential found in the environment replaced, so a
    config that interpolates one (`${oc.env:WANDB_API_KEY}`) is still logged without it."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, dict):
        return {k: redact_secrets(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_secrets(v, secrets) for v in value)
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "<redacted>")
    return value
