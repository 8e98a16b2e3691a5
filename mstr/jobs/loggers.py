"""The Lightning loggers of a job: built from the `logger` config group (W&B set up by
`mstr.jobs.tracking`), csv history kept across a resume, the config logged without credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from mstr.jobs import tracking
from mstr.training.distributed import is_rank_zero


def make_loggers(cfg: DictConfig, out_dir: Path, resume_step: Optional[int] = None) -> list:
    """The loggers of the `logger` group (none for `logger=none`), each continuing its history from a
    run resumed at global step `resume_step`, the composed config logged (credentials redacted)."""
    loggers = [tracking.make_logger(c, cfg, out_dir) for c in (cfg.get("logger") or {}).values()
               if c and "_target_" in c]
    for lg in loggers if is_rank_zero() else ():
        continue_csv(lg, resume_step)
        tracking.log_config(lg, cfg)
    return loggers


def csv_logger(save_dir: Path, resume_step: Optional[int] = None):
    """A CSV logger writing `<save_dir>/csv/metrics.csv` (a teacher trained on the way), its history
    kept when resuming at `resume_step`."""
    from pytorch_lightning.loggers import CSVLogger

    logger = CSVLogger(str(save_dir), name="csv", version="")
    continue_csv(logger, resume_step)
    return logger


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


def epoch_history(path: Path):
    """`csv/metrics.csv` as one row per epoch (a DataFrame indexed by epoch; each column its last value
    logged in that epoch), or None when the file holds no epoch rows. The CSV logger writes a row per
    logging call, each with only the values of that call."""
    import pandas as pd

    if not path.is_file():
        return None
    rows = pd.read_csv(path)
    if "epoch" not in rows or rows["epoch"].isna().all():
        return None
    history = rows.dropna(subset=["epoch"]).groupby("epoch").last()
    history.index = history.index.astype(int)
    return history
