"""Same config and seed on CPU: the same numbers, and a training order that depends on (seed, epoch) only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mstr.data.sampling import EpochSampler, make_sampler

# A teacher-like model (dropout 0.1, so the RNG matters), two short epochs.
OVERRIDES = ["model=teacher", "model.backbone.widths=[16,32]", "data.source.n_flows=3000", "data.batch_size=64",
             "trainer.max_epochs=2", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
             "trainer.enable_progress_bar=false", "logger=csv"]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same in both runs (results may differ across thread counts), and fast
    yield
    torch.set_num_threads(threads)


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not k.startswith("time/")}


@pytest.mark.slow
def test_same_config_and_seed_twice_give_identical_metrics_and_weights(compose_cfg, tmp_path, one_thread):
    from mstr.train import run

    for name in ("a", "b"):
        run(compose_cfg(OVERRIDES, out=tmp_path / name))
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    assert _numbers(a) == _numbers(b)
    assert len(_numbers(a)) > 15 and {"test/auroc", "val/f1_best", "model/params"} <= a.keys()
    assert {k for k in a if k.startswith("time/")} == {"time/train_s", "time/train_windows_per_s", "time/test_s"}
    wa, wb = (torch.load(tmp_path / n / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for n in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    # ...and another seed gives other numbers (the comparison above is not vacuous)
    c = run(compose_cfg([*OVERRIDES, "seed=1"], out=tmp_path / "c"))
    assert _numbers(c)["test/auroc"] != _numbers(a)["test/auroc"]


def test_cpu_trainer_is_deterministic_and_gpu_is_documented_not_to_be(compose_cfg):
    assert compose_cfg([]).trainer.deterministic is True
    assert compose_cfg(["trainer=gpu"]).trainer.deterministic is False


def test_epoch_order_depends_on_seed_and_epoch_only():
    weights = torch.rand(500, dtype=torch.double)
    a, b = EpochSampler(500, weights, seed=3), EpochSampler(500, weights, seed=3)
    first = list(a)                  # epoch 0, then the sampler moves on to epoch 1 by itself
    assert list(a) != first
    b.set_epoch(0)
    assert list(b) == first
    b.set_epoch(5)
    five = list(b)
    assert list(EpochSampler(500, weights, seed=4)) != first
    torch.manual_seed(123)
    c = EpochSampler(500, weights, seed=3)
    c.set_epoch(5)
    assert list(c) == five           # no matter what happened to the global RNG


def test_a_resumed_order_is_the_rest_of_the_interrupted_one():
    labels = np.array([0] * 450 + [1] * 50)
    for sampler in (make_sampler(labels, 2, "sqrt", seed=0), EpochSampler(len(labels), seed=0)):
        sampler.set_epoch(2)
        whole = list(sampler)
        sampler.start_at(2, 128)     # epoch 2 after two batches of 64
        assert list(sampler) == whole[128:]
        sampler.set_epoch(2)
        assert list(sampler) == whole  # the skip applies once
    state = torch.get_rng_state()
    list(EpochSampler(len(labels), seed=0))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not touched
    assert sorted(EpochSampler(len(labels), seed=0)) == list(range(len(labels)))  # no weights: a permutation
