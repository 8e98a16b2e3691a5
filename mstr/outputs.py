"""Run outputs: `metrics.json` written atomically, the final metrics table, and run-dir bookkeeping for
resumption (which config a dir belongs to, whether a job is using it) and for secrets (never logged)."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Optional

from mstr.errors import MstrError

CONFIG_KEY_FILE = "config_key.txt"
LOCK_FILE = ".lock"
WANDB_ID_FILE = "wandb_id.txt"
# Keys that may differ between a run and its resumption.
_RESUME_KEYS = ("resume", "ckpt_path")
_SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)


def write_json(path: Path, data: dict) -> None:
    """Write via a temporary file and rename, so a killed run never leaves half a metrics file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def print_table(metrics: dict, title: str) -> None:
    """The metrics on the terminal; `audit/...` entries stay in metrics.json (the DataModule logs the
    leakage audit as its own line)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(k for k in metrics if not k.startswith("audit/")):
        value = metrics[key]
        if isinstance(value, float):
            text = f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e6 else f"{value:.4g}"
        else:
            text = str(value)
        table.add_row(key, text)
    Console().print(table)


# ---- resumption --------------------------------------------------------------------------------
def config_key(cfg) -> str:
    """Hash of a job's composed config, without the keys a resumption adds (`resume`, `ckpt_path`) and
    the output dir. Unresolved, so it is the same in `preflight` and in the job."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=False)
    for key in _RESUME_KEYS:
        data.pop(key, None)
    data.pop("hydra", None)
    (data.get("paths") or {}).pop("output_dir", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resume_checkpoints(run_dir: Path) -> list[Path]:
    """The last checkpoints a run dir holds: the model's, and the teacher's trained on the way."""
    run_dir = Path(run_dir)
    return [p for p in (run_dir / "checkpoints" / "last.ckpt", run_dir / "teacher" / "checkpoints" / "last.ckpt")
            if p.is_file()]


def find_resumable(runs_dir: Path, key: str) -> Optional[Path]:
    """The newest run dir under `runs_dir` of config `key` that is unfinished (no metrics.json), holds a
    last checkpoint, and is not in use by a running job; None if there is none."""
    candidates = []
    for run_dir in Path(runs_dir).glob("*/"):
        try:
            if (run_dir / CONFIG_KEY_FILE).read_text().strip() != key or (run_dir / "metrics.json").exists():
                continue
        except OSError:
            continue
        ckpts = resume_checkpoints(run_dir)
        if ckpts and not RunLock(run_dir).held_elsewhere():
            candidates.append((max(p.stat().st_mtime for p in ckpts), str(run_dir)))
    return Path(max(candidates)[1]) if candidates else None


class RunLock:
    """An exclusive lock on a run dir for as long as a job uses it (released by the OS when the process
    dies, SIGKILL included), so no two jobs ever write into one dir and resumption skips live runs."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: Optional[int] = None

    def _flock(self, fd: int) -> bool:
        try:
            import fcntl
        except ImportError:  # Windows: no locking
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as err:  # held elsewhere; other errors (a filesystem without locks): go on unlocked
            return err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not self._flock(fd):
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise MstrError(f"{self.path.parent} is in use by another running job (pid {holder}); wait for it to "
                            "end or give another hydra.run.dir")
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def held_elsewhere(self) -> bool:
        if not self.path.is_file():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return not self._flock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ---- csv curves across a resumption ----------------------------------------------------------------
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


# ---- secrets ----------------------------------------------------------------------------------
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
