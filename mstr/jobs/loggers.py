"""The Lightning loggers of a job: built from the `logger` config group, a W&B run id kept in the run
dir (a resumed job continues the same W&B run), csv history kept across a resume, and credentials kept
out of everything logged."""

from __future__ import annotations

import os
import re
from secrets import choice
import string
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

WANDB_ID_FILE = "wandb_id.txt"
_SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)


def make_loggers(cfg: DictConfig, out_dir: Path, resume_step: Optional[int] = None) -> list:
    """The loggers of the `logger` group (none for `logger=none`), each continuing its history from a
    run resumed at global step `resume_step`, the composed config logged (credentials redacted)."""
    from omegaconf import OmegaConf

    loggers = [_logger(c, out_dir) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    for lg in loggers:
        continue_csv(lg, resume_step)
        lg.log_hyperparams(redact_secrets(OmegaConf.to_container(cfg, resolve=True)))
    return loggers


def csv_logger(save_dir: Path, resume_step: Optional[int] = None):
    """A CSV logger writing `<save_dir>/csv/metrics.csv` (a teacher trained on the way), its history
    kept when resuming at `resume_step`."""
    from pytorch_lightning.loggers import CSVLogger

    logger = CSVLogger(str(save_dir), name="csv", version="")
    continue_csv(logger, resume_step)
    return logger


def finish_wandb(loggers: list, exit_code: int) -> None:
    """One W&B run per job, also under multirun: close it with the job's exit code."""
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish(exit_code=exit_code)


def _logger(logger_cfg: DictConfig, out_dir: Path):
    from hydra.utils import instantiate

    if str(logger_cfg.get("_target_", "")).endswith("WandbLogger"):
        # The run id lives in the run dir, so a resumed job continues the same W&B run.
        run_id = logger_cfg.get("id") or wandb_run_id(out_dir)
        return instantiate(logger_cfg, id=run_id, resume=logger_cfg.get("resume") or "allow")
    return instantiate(logger_cfg)


def wandb_run_id(out_dir: Path) -> str:
    path = Path(out_dir) / WANDB_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = "".join(choice(string.ascii_lowercase + string.digits) for _ in range(8))  # W&B's own format
    path.write_text(run_id + "\n")
    return run_id


def continue_csv(logger, before_step: Optional[int]) -> None:
    """Lightning's CSVLogger empties an existing metrics.csv when it starts. For a run resumed from a
    checkpoint at global step `before_step`, put back the rows logged before it (later rows are logged
    again), so `metrics.csv` holds the whole run. A no-op for other loggers or when not resuming."""
    import csv

    if before_step is None or type(logger).__name__ != "CSVLogger":
        return
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if _logged_before(r, before_step)]
        header = list(reader.fieldnames or [])
    writer = logger.experiment  # creating the writer empties the file
    if not header or not hasattr(writer, "metrics_file_path") or not hasattr(writer, "metrics_keys"):
        return
    with open(writer.metrics_file_path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=header)
        out.writeheader()
        out.writerows(rows)
    writer.metrics_keys = list(header)


def _logged_before(row: dict, step: int) -> bool:
    try:
        return int(float(row.get("step"))) < step
    except (TypeError, ValueError):
        return False


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
