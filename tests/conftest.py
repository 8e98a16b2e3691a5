"""Shared fixtures: where the real data is, configs composed with outputs under tmp, and one small
synthetic DataModule. Tests marked `slow` (subprocesses, whole pipelines) run with `-m "slow or not slow"`."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("MSTR_DATA_DIR", str((REPO.parent / "shared" / "data").resolve()))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# A slice of the shared CIC-IDS2017 files (rows per class file). DDoS, the newest class (Friday
# evening), has fewer training rows than a global newest-15% validation carve takes, as in the full
# files: a validation carve that is not per class (as the test split is) leaves multi-class training
# without DDoS ("label(s) ['DDoS'] never seen in training").
CIC_SLICE = {"BENIGN_5000": 900, "Portscan_5000": 300, "DDoS_5000": 150, "SSH-Patator_2961": 300}

# Small but real: every test run trains on a few thousand generated flows.
SMALL = [
    "data.source.n_flows=3000",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


def without_plots(overrides) -> list[str]:
    """`plots=false` unless the overrides set `plots`: a training run's PNGs cost about a second each
    (matplotlib), and tests/test_train.py checks them on a run of their own."""
    return [] if any(str(o).startswith("plots=") for o in overrides) else ["plots=false"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real data (MSTR_DATA_DIR); a missing folder fails the tests that need it."""
    path = Path(os.environ["MSTR_DATA_DIR"])
    assert path.is_dir(), f"real data expected at {path} (set MSTR_DATA_DIR)"
    return path


def write_cic_slice(data_dir: Path, root: Path) -> Path:
    """`root/cic_ids2017_improved/` holding the first CIC_SLICE rows of each class file; returns root."""
    import pandas as pd

    folder = root / "cic_ids2017_improved"
    folder.mkdir(parents=True)
    for name, n in CIC_SLICE.items():
        pd.read_csv(data_dir / "cic_ids2017_improved" / f"{name}.csv.gz").head(n).to_csv(folder / f"{name}.csv",
                                                                                            index=False)
    return root


@pytest.fixture
def compose_cfg(tmp_path):
    """compose(overrides, config_name, out): the composed config with run outputs in `out` (default
    tmp_path/run) and the teacher cache in tmp_path/teachers. Module-scoped fixtures call
    `mstr.config.compose_config` with their own paths."""
    from mstr.config import compose_config

    def _compose(overrides=(), config_name="train", out: Path | None = None):
        quiet = without_plots(overrides) if config_name == "train" else []
        return compose_config(config_name, [f"paths.output_dir={out or tmp_path / 'run'}",
                                            f"paths.teacher_cache_dir={tmp_path / 'teachers'}", *quiet, *overrides])

    return _compose


@pytest.fixture(scope="session")
def small_synthetic_dm():
    """A set-up synthetic DataModule (3,000 flows, window 8), shared by tests that only read it."""
    from mstr.data.datamodule import FlowDataModule
    from mstr.data.datasets.synthetic import load

    dm = FlowDataModule(partial(load, n_flows=3000, task="binary"), name="synthetic", window=8, seed=0)
    dm.setup()
    return dm
