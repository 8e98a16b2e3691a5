"""Run-dir bookkeeping: which config a dir belongs to, which dirs an unfinished run can continue in, a
lock so that no two jobs ever write into one dir, and a run dir given where a checkpoint is asked for."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Optional

from mstr.errors import ConfigError, MstrError

CONFIG_KEY_FILE = "config_key.txt"
LOCK_FILE = ".lock"
# Keys that may differ between a run and its resumption.
_RESUME_KEYS = ("resume", "ckpt_path")


def checkpoint_file(value) -> Optional[Path]:
    """`ckpt_path` as a user gives it: a checkpoint file, or a run dir (its `checkpoints/best.ckpt`);
    None when it is neither."""
    if not value:
        return None
    path = Path(str(value))
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    return path if path.is_file() else None


CHECKPOINT_HINT = ("give an existing checkpoint file or its run dir, e.g. "
                   "ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt")


def given_checkpoint(value) -> Path:
    """`ckpt_path` as given to evaluate / export: the checkpoint file it names, else a ConfigError saying
    why there is none (`run_without_checkpoint`, or how to name one)."""
    ckpt = checkpoint_file(value)
    if ckpt is None:
        raise ConfigError(f"ckpt_path={value}: {run_without_checkpoint(value) or CHECKPOINT_HINT}")
    return ckpt


def run_without_checkpoint(value) -> Optional[str]:
    """Why a run dir (or its `checkpoints/best.ckpt`) holds no best checkpoint: a run that finished
    without one (`debug=fast` keeps none) or one that has not got that far; None for a path that is no
    run's."""
    if not value:
        return None
    path = Path(str(value))
    run = path if is_run_dir(path) else path.parent.parent if path.parent.name == "checkpoints" else None
    if run is None or not is_run_dir(run):
        return None
    if (run / "metrics.json").is_file():
        return ("this run finished without keeping a best checkpoint (a debug=fast run keeps none); train one "
                "without debug=fast, or give another run")
    try:  # written by mstr.jobs.multirun.record_failure (here by name: jobs/ imports nothing of the CLI's)
        failure = json.loads((run / "job_error.json").read_text()).get("error")
    except (OSError, ValueError, AttributeError):
        failure = None
    if failure:
        return f"this run failed before it kept a best checkpoint ({failure}); fix that and train again"
    return ("this run dir holds no checkpoints/best.ckpt yet: the run stopped (or is still training) before its "
            "first validation epoch; finish it with its train command plus resume=auto, or give another run")


def is_run_dir(path: Path) -> bool:
    """A training run's dir: every run writes its config hash first."""
    return (path / CONFIG_KEY_FILE).is_file()


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
            err = self._in_use(fd)
            os.close(fd)
            raise err
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def _in_use(self, fd: int) -> MstrError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        return MstrError(f"{self.path.parent} is in use by another running job (pid {holder}); wait for it to "
                         "end or give another hydra.run.dir")

    def check_free(self) -> None:
        """The in-use error if another job holds the lock: to refuse a run dir before writing into it."""
        if not self.path.is_file():
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if not self._flock(fd):
                raise self._in_use(fd)
        finally:
            os.close(fd)

    def held_elsewhere(self) -> bool:
        try:
            self.check_free()
        except MstrError:
            return True
        return False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
