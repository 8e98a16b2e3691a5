"""Which process of a distributed run this is, known before any Trainer exists.

Under DDP, Lightning starts the entry point again for every device past the first (`LOCAL_RANK` > 0,
on other nodes `NODE_RANK` > 0), and a cluster runs it once per task (`SLURM_PROCID`, `RANK`). Every
rank trains; rank zero alone owns the run dir: its lock, `config_key.txt`, the test scores, the
compression report and `metrics.json`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, Optional

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
# what Lightning's launcher sets in the process that starts the other ranks
_LAUNCH_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "PL_GLOBAL_SEED")


def is_rank_zero() -> bool:
    return all(int(os.environ.get(key) or 0) == 0 for key in RANK_VARIABLES)


@contextlib.contextmanager
def job_command_line() -> Iterator[None]:
    """Under `-m`, Lightning would start each extra DDP rank with the whole sweep's command line (`-m`
    and every swept value) and Hydra's run-dir pattern, so the rank would run the sweep again somewhere
    else. For the duration of one job, the command line is that job's own overrides and Hydra's run dir
    is the job's dir: the ranks Lightning starts join this job. Afterwards the process group and the
    variables Lightning set for it are gone, so that the next job starts its own ranks. Outside a
    multirun: nothing changes."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    hydra_cfg = HydraConfig.get()
    argv, run_dir = list(sys.argv), hydra_cfg.run.dir
    environment = {key: os.environ.get(key) for key in _LAUNCH_VARIABLES}
    sys.argv[1:] = list(hydra_cfg.overrides.task)
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv[:] = argv
        with read_write(hydra_cfg.run):
            hydra_cfg.run.dir = run_dir
        _end_process_group(environment)


def _end_process_group(environment: dict[str, Optional[str]]) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in environment.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def visible_gpus() -> list[str]:
    """The GPUs this process sees, as CUDA_VISIBLE_DEVICES entries ([] without CUDA)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]
