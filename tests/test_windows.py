import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mstr.data.windows import FlowWindowDataset, IndexedWindows, sequence_order


def test_window_holds_earlier_flows_of_the_same_group_in_time_order():
    features = (np.arange(10, dtype=np.float32) + 1)[:, None]
    time = np.array([5, 1, 2, 3, 4, 0, 6, 7, 8, 9.0])
    group = np.array(list("ababababab"))
    ds = FlowWindowDataset(features, np.arange(10) % 2, window=3, time=time, group=group)
    x, y = ds[0]  # row 0: group a, t=5 -> earlier a-flows at t=2 (row 2) and t=4 (row 4)
    assert x.squeeze(-1).tolist() == [3.0, 5.0, 1.0]
    assert int(y) == 0
    x, _ = ds[2]  # the first flow of group a: zero padding before it
    assert x.squeeze(-1).tolist() == [0.0, 0.0, 3.0]


def test_batched_fetch_equals_single_items_and_stores_features_once():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 4)).astype(np.float32)
    ds = FlowWindowDataset(features, rng.integers(0, 2, 50), window=5, time=rng.uniform(size=50),
                           group=rng.integers(0, 3, 50))
    xb, yb = ds.__getitems__([3, 7, 11])
    for k, i in enumerate([3, 7, 11]):
        x, y = ds[i]
        assert torch.equal(xb[k], x) and yb[k] == y
    # no W-fold copy: the dataset keeps one [N, F] feature tensor and O(N) index arrays
    assert ds.features.shape == (50, 4)
    index_bytes = sum(t.numel() for t in (ds._order, ds._position, ds._run_start))
    assert index_bytes == 3 * 50


@settings(max_examples=60, deadline=None)
@given(st.integers(5, 60), st.integers(1, 6), st.integers(1, 4), st.integers(0, 10_000))
def test_windows_are_causal_and_labelled_by_their_newest_flow(n, window, groups, seed):
    rng = np.random.default_rng(seed)
    time = rng.permutation(n).astype(float)
    group = rng.integers(0, groups, n)
    ds = FlowWindowDataset(np.zeros((n, 1), np.float32), np.arange(n), window, time=time, group=group)
    rows, valid = ds.window_rows(torch.arange(n))
    assert torch.equal(rows[:, -1], torch.arange(n))  # newest position is the flow itself
    assert valid[:, -1].all()
    for i in range(n):
        r = rows[i][valid[i]].numpy()
        assert (group[r] == group[i]).all()  # same group only
        assert np.all(np.diff(time[r]) > 0) and time[r][-1] == time[i]  # ordered, nothing from the future
        earlier = np.sort(time[(group == group[i]) & (time < time[i])])[-(window - 1):] if window > 1 else []
        assert list(time[r][:-1]) == list(earlier)  # exactly the latest earlier flows


def test_without_time_or_group_rows_keep_their_order():
    order, run_start = sequence_order(None, None, 4)
    assert order.tolist() == [0, 1, 2, 3] and run_start.tolist() == [0, 0, 0, 0]


def test_datamodule_windows_never_cross_splits(small_synthetic_dm):
    dm = small_synthetic_dm
    for key in ("train", "val", "test_synthetic"):
        ds = dm.dataset(key)
        table = dm.tables[key]
        assert len(ds) == len(table)
        rows, _ = ds.window_rows(torch.arange(len(ds)))
        assert rows.max() < len(table)  # indices into this split's own rows only
    train_t = dm.tables["train"].frame["ts"]
    assert train_t.max() < dm.tables["val"].frame["ts"].min() < dm.tables["test_synthetic"].frame["ts"].min()


def _grouped_windows(window: int) -> FlowWindowDataset:
    rng = np.random.default_rng(1)
    features = np.arange(400, dtype=np.float32).reshape(200, 2)
    return FlowWindowDataset(features, rng.integers(0, 2, 200), window=window, time=rng.uniform(size=200),
                             group=rng.integers(0, 5, 200))


def test_context_swap_keeps_the_newest_flow_and_takes_earlier_flows_from_another_window():
    ds = _grouped_windows(window=4)
    index = list(range(10, 200))
    plain_x, plain_y = ds.__getitems__(index)
    x, y, idx, swapped = IndexedWindows(ds, context_swap=0.5, seed=3).__getitems__(index)
    assert torch.equal(y, plain_y) and torch.equal(idx, torch.tensor(index))
    assert torch.equal(x[:, -1], plain_x[:, -1])  # the newest flow, which the label belongs to, stays
    changed = (x[:, :-1] != plain_x[:, :-1]).flatten(1).any(1)
    assert 0.3 < changed.float().mean() < 0.7  # about the asked share (a swap with itself changes nothing)
    assert not (changed & ~swapped).any()  # every changed window is marked, for per-row caches to skip
    assert 0.3 < swapped.float().mean() < 0.7
    for k in changed.nonzero().squeeze(1).tolist():  # each new context is another batch window's context
        assert (plain_x[:, :-1] == x[k, :-1]).flatten(1).all(1).any()
    again, *_ = IndexedWindows(ds, context_swap=0.5, seed=3).__getitems__(index)
    other_seed, *_ = IndexedWindows(ds, context_swap=0.5, seed=4).__getitems__(index)
    assert torch.equal(again, x) and not torch.equal(other_seed, x)  # a resumed run sees the same windows


def test_a_context_swap_that_windows_of_one_flow_turn_off_is_warned_about(caplog):
    import logging
    from functools import partial

    from mstr.data.datamodule import FlowDataModule
    from mstr.data.datasets.synthetic import load

    dm = FlowDataModule(partial(load, n_flows=600), name="synthetic", window=1, context_swap=0.3)
    with caplog.at_level(logging.WARNING, logger="mstr.data.datamodule"):
        dm.setup()
    assert any("data.context_swap=0.3 has no effect" in r.getMessage() for r in caplog.records)


def test_context_swap_is_off_at_zero_and_for_windows_of_one_flow():
    for window, share in ((4, 0.0), (1, 1.0)):
        ds = _grouped_windows(window)
        plain_x, _ = ds.__getitems__(list(range(50)))
        x, _, _, swapped = IndexedWindows(ds, context_swap=share, seed=0).__getitems__(list(range(50)))
        assert torch.equal(x, plain_x) and not swapped.any()


def test_mixed_context_marks_windows_whose_earlier_flows_hold_another_class():
    # one host, in time order: benign, attack, attack, benign, benign, benign
    labels = np.array([0, 1, 1, 0, 0, 0])
    ds = FlowWindowDataset(np.zeros((6, 1), np.float32), labels, window=3, time=np.arange(6.0), group=np.zeros(6))
    assert ds.mixed_context(chunk=4).tolist() == [False, True, True, True, True, False]
    # padding before a group's first flow is not a flow of another class
    assert not FlowWindowDataset(np.zeros((6, 1), np.float32), labels, window=1).mixed_context().any()
