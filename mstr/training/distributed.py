"""Which process of a distributed run this is, known before any Trainer exists.

Under DDP, Lightning starts the entry point again for every device past the first (`LOCAL_RANK` > 0,
on other nodes `NODE_RANK` > 0), and a cluster runs it once per task (`SLURM_PROCID`, `RANK`). Every
rank trains; rank zero alone owns the run dir: its lock, `config_key.txt`, the test scores, the
compression report and `metrics.json`.
"""

from __future__ import annotations

import os

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def is_rank_zero() -> bool:
    return all(int(os.environ.get(key) or 0) == 0 for key in RANK_VARIABLES)


def visible_gpus() -> list[str]:
    """The GPUs this process sees, as CUDA_VISIBLE_DEVICES entries ([] without CUDA)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]
