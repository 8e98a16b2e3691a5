"""Shared fixtures: composed configs with outputs under tmp, and one small synthetic DataModule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("MSTR_DATA_DIR", str((REPO.parent / "shared" / "data").resolve()))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Small but real: every test run trains on a few thousand generated flows.
SMALL = [
    "data.source.n_flows=3000",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ["MSTR_DATA_DIR"])
    assert path.is_dir(), f"real data expected at {path} (set MSTR_DATA_DIR)"
    return path


@pytest.fixture
def compose_cfg(tmp_path):
    """compose(train, overrides) with run outputs and the teacher cache in tmp_path."""
    from hydra import compose, initialize_config_dir

    from mstr.config import config_dir, register_resolvers

    register_resolvers()

    def _compose(overrides=(), config_name="train", out: Path | None = None):
        out = out or tmp_path / "run"
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose(config_name=config_name, overrides=[
                f"paths.output_dir={out}", f"paths.teacher_cache_dir={tmp_path / 'teachers'}", *overrides])

    return _compose


@pytest.fixture(scope="session")
def small_synthetic_dm():
    """A set-up synthetic DataModule (3,000 flows, window 8), shared by tests that only read it."""
    from mstr.data.datamodule import FlowDataModule
    from mstr.data.datasets.synthetic import load
    from functools import partial

    dm = FlowDataModule(partial(load, n_flows=3000, task="binary"), name="synthetic", window=8, seed=0)
    dm.setup()
    return dm
