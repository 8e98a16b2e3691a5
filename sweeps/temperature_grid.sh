#!/usr/bin/env bash
# A Hydra multirun grid: temperatures x seeds, one output dir per job (outputs/train/multiruns/...).
# With logger=wandb every job is its own W&B run (offline; `wandb sync outputs/train/multiruns/*/*/wandb/offline-*`).
set -euo pipefail
python -m mstr.train -m model=student distill=logits distill.temperature=1,2,4,8 seed=0,1,2 "$@"
