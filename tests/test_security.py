"""Hostile checkpoints never run code; credentials never land in configs, logs or output dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

FAKE_KEY = "mstr-fake-wandb-key-31c8e0d94a7b"


class _Payload:
    """Unpickling this (a full, unsafe unpickle) runs code: it writes `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('the payload ran')",)


def _hostile_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": {"role": "student"}, "mstr_format": 1,
                "callbacks": _Payload(marker)}, path)
    # The payload is live: an unsafe load runs it (so the tests below would notice if anything did).
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.read_text() == "the payload ran"
    marker.unlink()
    return path


def _env(tmp: Path, **extra) -> dict:
    env = {**os.environ, "MSTR_LOG_DIR": str(tmp / "logs"), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", **extra}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


SMALL_CLI = ["data.source.n_flows=3000", "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
             "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "plots=false"]


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict:
    """Three entry-point runs at once: a hostile teacher_ckpt, a hostile ckpt_path, and a W&B run with an
    API key in the environment (and in the config, through an interpolation)."""
    root = tmp_path_factory.mktemp("security")
    marker = root / "PAYLOAD_RAN"
    evil = _hostile_checkpoint(root / "evil.ckpt", marker)
    jobs = {
        "teacher_ckpt": ["model=student", f"distill.teacher_ckpt={evil}", *SMALL_CLI],
        "ckpt_path": ["model=student", "distill=none", f"ckpt_path={evil}", *SMALL_CLI],
        "wandb": ["model=student", "distill=none", "logger=wandb", "+notes=${oc.env:WANDB_API_KEY}", *SMALL_CLI],
    }
    procs = {}
    for name, args in jobs.items():
        (root / name).mkdir()
        procs[name] = subprocess.Popen([sys.executable, "-m", "mstr.train", *args], cwd=root / name,
                                       env=_env(root / name, WANDB_API_KEY=FAKE_KEY), text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = {name: (proc.wait(timeout=600), *proc.communicate()) for name, proc in procs.items()}
    return {"root": root, "marker": marker, "evil": evil, "results": results}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["teacher_ckpt", "ckpt_path"])
def test_a_checkpoint_carrying_a_pickle_payload_is_refused_and_never_runs(cli, how):
    rc, out, err = cli["results"][how]
    assert rc == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert str(cli["evil"]) in lines[0] and "refused to load" in lines[0]
    assert not cli["marker"].exists()
    assert not (cli["root"] / how / "logs").exists()  # refused before any work: no output dir either


def test_safe_loaders_refuse_the_payload_in_process(tmp_path):
    from mstr.errors import DataError
    from mstr.training.checkpoint import load_classifier, read_checkpoint

    marker = tmp_path / "PAYLOAD_RAN"
    evil = _hostile_checkpoint(tmp_path / "evil.ckpt", marker)
    for load in (read_checkpoint, load_classifier):
        with pytest.raises(DataError, match="refused to load"):
            load(evil)
    assert not marker.exists()


@pytest.mark.slow
def test_the_wandb_api_key_never_lands_in_configs_metrics_or_the_output_dir(cli):
    rc, out, err = cli["results"]["wandb"]
    assert rc == 0, err[-3000:]
    logs = cli["root"] / "wandb" / "logs"
    (run,) = list((logs / "train" / "runs").iterdir())
    assert (run / "metrics.json").is_file() and list((run / "wandb").glob("offline-run-*"))
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert len(files) > 10
    leaks = [str(p) for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert not leaks
    assert FAKE_KEY not in out and FAKE_KEY not in err
    # the config interpolating the key was logged, redacted
    assert any(b"<redacted>" in p.read_bytes() for p in (run / "wandb").glob("offline-run-*/*.wandb"))


def test_logged_configs_are_redacted(compose_cfg, monkeypatch):
    from omegaconf import OmegaConf

    from mstr.jobs.tracking import redact_secrets

    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    cfg = compose_cfg(["+notes=key ${oc.env:WANDB_API_KEY} inside", "logger=wandb"])
    logged = redact_secrets(OmegaConf.to_container(cfg, resolve=True))
    assert logged["notes"] == "key <redacted> inside"
    assert FAKE_KEY not in json.dumps(logged)


def test_files_that_are_not_checkpoints_get_a_message_that_says_so(tmp_path):
    import torch

    from mstr.errors import DataError
    from mstr.training.checkpoint import read_checkpoint

    text = tmp_path / "notes.ckpt"
    text.write_text("epoch=3 val/f1=0.9\n")
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.ones(64, 64)}, "hyper_parameters": {}}, whole)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for path in (text, truncated):
        with pytest.raises(DataError, match=f"{path.name}: not a torch checkpoint"):
            read_checkpoint(path)
    assert read_checkpoint(whole)["state_dict"]["w"].shape == (64, 64)
    from mstr.training.checkpoint import load_classifier

    with pytest.raises(DataError, match="whole.ckpt: its hyper_parameters do not describe an mstr model"):
        load_classifier(whole)  # a torch checkpoint, but not of an mstr model
