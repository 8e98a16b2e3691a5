import json

import numpy as np
import pandas as pd
import pytest

from mstr.data.preprocessing import FORMAT_VERSION, FlowPreprocessor
from mstr.data.table import FlowTable
from mstr.errors import DataError


def _table(n=200, seed=0, services=("http", "dns"), labels=("benign", "attack")):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "bytes": rng.pareto(1.2, n) * 1000,  # heavy-tailed: gets log1p
        "rate": rng.normal(5, 2, n),          # symmetric: no log
        "service": rng.choice(list(services), n),
        "label": rng.choice(list(labels), n),
    })
    return FlowTable(frame, ["bytes", "rate"], ["service"], benign=("benign",), source="t.csv")


def test_statistics_come_from_the_training_split_only():
    train, test = _table(seed=0), _table(seed=1)
    prep = FlowPreprocessor.fit(train)
    assert prep.log_cols == ["bytes"]
    x_train = prep.transform(train)
    assert np.allclose(x_train[:, :2].mean(0), 0, atol=1e-5)  # standardised with train stats
    assert not np.allclose(prep.transform(test)[:, :2].mean(0), 0, atol=1e-3)
    assert prep.fit_rows == 200 and prep.classes[0] == "benign"


def test_unknown_categories_go_to_the_unknown_bucket():
    prep = FlowPreprocessor.fit(_table())
    x = prep.transform(_table(services=("ssh",)))
    unknown = prep.feature_names.index("service=<unknown>")
    assert (x[:, unknown] == 1).all() and x[:, 2:].sum() == len(x)
    # and a report can say so: which column, how many rows, what value
    assert prep.outside_categories(_table(services=("ssh",))) == {"service": (200, "ssh")}
    assert prep.outside_categories(_table(services=("http", "ssh")))["service"][1] == "ssh"
    assert prep.outside_categories(_table()) == {}


def test_state_round_trips_through_json_and_rejects_newer_formats():
    prep = FlowPreprocessor.fit(_table())
    restored = FlowPreprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert np.array_equal(restored.transform(_table(seed=3)), prep.transform(_table(seed=3)))
    with pytest.raises(DataError, match="newer"):
        FlowPreprocessor.from_dict({**prep.to_dict(), "version": FORMAT_VERSION + 1})


def test_labels_unseen_in_training_are_an_error_naming_the_file():
    prep = FlowPreprocessor.fit(_table())
    with pytest.raises(DataError, match="t.csv.*never seen"):
        prep.encode_labels(_table(labels=("worm",)))


def test_minmax_scaler_maps_train_to_unit_range():
    prep = FlowPreprocessor.fit(_table(), scaler="minmax")
    x = prep.transform(_table())[:, :2]
    assert x.min() == pytest.approx(0.0) and x.max() == pytest.approx(1.0)


def test_piecewise_linear_bins_come_from_train_quantiles_and_encode_monotonically():
    from mstr.errors import ConfigError

    train = _table(n=400, seed=0)
    train.frame["flag"] = np.zeros(400)  # constant: no bins for it
    train = FlowTable(train.frame, ["bytes", "rate", "flag"], ["service"], benign=("benign",), source="t.csv")
    prep = FlowPreprocessor.fit(train, numeric_bins=4)
    assert set(prep.bin_edges) == {"bytes", "rate"} and len(prep.bin_edges["rate"]) == 5
    # edges are quantiles of the (log-transformed) training values: a quarter of train in each bin
    rate_edges = np.asarray(prep.bin_edges["rate"])
    assert np.allclose(rate_edges, np.quantile(train.frame["rate"], np.linspace(0, 1, 5)))
    x = prep.transform(train)
    assert x.shape[1] == prep.num_features == 3 + 4 + 4 + 3
    bins = x[:, [prep.feature_names.index(f"rate#bin{t}") for t in range(1, 5)]]
    assert bins.min() >= 0 and bins.max() <= 1
    # a value's code is "how many bins it has passed": the sum ranks rows exactly as the raw value does
    order = np.argsort(train.frame["rate"].to_numpy(), kind="stable")
    assert (np.diff(bins.sum(axis=1)[order]) >= -1e-6).all()
    # values in bin t fill bins before it completely and the ones after not at all
    inside = (train.frame["rate"] > rate_edges[1]) & (train.frame["rate"] < rate_edges[2])
    assert (bins[inside, 0] == 1).all() and (bins[inside, 2:] == 0).all()
    # beyond the training range: saturates, no extrapolation
    far = FlowTable(train.frame.assign(rate=1e6), train.numeric_cols, ["service"], benign=("benign",))
    assert (prep.transform(far)[:, [prep.feature_names.index(f"rate#bin{t}") for t in range(1, 5)]] == 1).all()
    again = FlowPreprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert np.array_equal(again.transform(train), x)
    for bad in (1, -2, 2.5):
        with pytest.raises(ConfigError, match="data.numeric_bins"):
            FlowPreprocessor.fit(train, numeric_bins=bad)


def test_frequent_values_get_indicators_in_their_columns_token():
    from mstr.errors import ConfigError

    n = 5000
    train = _table(n=n, seed=0)
    rng = np.random.default_rng(0)
    # a TTL-like column: a few exact values repeat (one of them on only 3 rows), the rest are spread out
    ttl = rng.choice([64.0, 128.0, 254.0], n)
    ttl[:3], ttl[3:300] = 31.0, rng.uniform(0, 300, 297)
    train.frame["ttl"], train.frame["flag"] = ttl, rng.integers(0, 2, n).astype(float)
    train = FlowTable(train.frame, ["bytes", "rate", "ttl", "flag"], ["service"], benign=("benign",), source="t.csv")
    prep = FlowPreprocessor.fit(train, frequent_values=3)
    # the 3 most frequent values of ttl with enough rows (31.0 has 3 < 5); none for the continuous rate
    # (no value repeats) or the two-valued flag (its scaled value says which)
    assert prep.frequent_values["ttl"] == [64.0, 128.0, 254.0]
    assert "rate" not in prep.frequent_values and "flag" not in prep.frequent_values
    x = prep.transform(train)
    names = prep.feature_names
    cols = [names.index(f"ttl#is{v}") for v in ("64", "128", "254")]
    np.testing.assert_array_equal(x[:, cols], (ttl[:, None] == [64.0, 128.0, 254.0]).astype(np.float32))
    assert x.shape[1] == prep.num_features
    # the indicators belong to the column's own token, after its scaled value
    layout = prep.layout()
    token = layout["tokens"][layout["names"].index("ttl")]
    assert token[0] == names.index("ttl") and token[1:] == cols
    again = FlowPreprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert np.array_equal(again.transform(train), x)
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="data.frequent_values"):
            FlowPreprocessor.fit(train, frequent_values=bad)


def test_gaps_are_filled_with_training_medians_in_every_split(tmp_path):
    """A test file whose own medians differ from train's: its NaN/inf cells get train's medians, the
    values that the fitted (and saved) preprocessing carries, not the test file's."""
    from mstr.data.datasets import nsl_kdd

    folder = tmp_path / "nsl_kdd"
    folder.mkdir()
    row = "{dur},tcp,http,SF,{src},100" + ",0" * 35 + ",{label},21\n"
    train = "".join(row.format(dur=d, src=s, label=lab) for d, s, lab in
                    [(1, 10, "normal"), (2, 20, "neptune"), (3, 30, "normal"), ("", "Infinity", "smurf")])
    test = "".join(row.format(dur=d, src=s, label=lab) for d, s, lab in
                   [(100, 1000, "normal"), (200, 2000, "neptune"), ("NaN", "inf", "normal")])
    (folder / "KDDTrain+.txt").write_text(train)
    (folder / "KDDTest+.txt").write_text(test)
    splits = nsl_kdd.load(tmp_path)
    prep = FlowPreprocessor.fit(splits.train)
    fill = dict(zip(prep.numeric_cols, prep.fill))
    assert fill["duration"] == 2.0 and fill["src_bytes"] == 20.0  # train's medians (test's: 150, 1500)
    filled_test = splits.tests["KDDTest+"].take(np.array([2]))
    as_train_row = splits.train.take(np.array([1]))  # duration 2, src_bytes 20: the medians themselves
    assert np.array_equal(prep.transform(filled_test)[:, :2], prep.transform(as_train_row)[:, :2])
    # the medians travel with the fitted state, so a restored preprocessing fills new data alike
    restored = FlowPreprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert np.array_equal(restored.transform(filled_test), prep.transform(filled_test))
    assert np.isfinite(prep.transform(splits.train)).all()


def test_columns_ordered_by_dependence_put_related_columns_side_by_side():
    """Two families of columns (each a noisy copy of one hidden value, in either direction) interleaved in
    the file: ordered by dependence each family stands together, fit on the training rows alone; the
    order travels with the preprocessing and decides the tokenizer's layout."""
    from sklearn.metrics import normalized_mutual_info_score

    from mstr.data.column_order import normalised_mutual_information
    from mstr.errors import ConfigError

    n = 3000
    rng = np.random.default_rng(0)
    size, ttl = rng.lognormal(5, 2, n), rng.choice([32.0, 64.0, 128.0, 254.0], n)
    frame = pd.DataFrame({
        "bytes": size * rng.uniform(0.9, 1.1, n), "hops": 255 - ttl + rng.integers(0, 3, n),
        "packets": size / 500 + rng.uniform(0, 1, n), "ttl": ttl,
        "mean_size": 1 / size, "proto": np.where(ttl > 100, "udp", "tcp"),
        "label": rng.choice(["benign", "attack"], n),
    })
    cols = ["bytes", "hops", "packets", "ttl", "mean_size"]
    train = FlowTable(frame, cols, ["proto"], benign=("benign",), source="t.csv")
    assert FlowPreprocessor.fit(train).column_order == cols + ["proto"]  # the data's own order by default
    prep = FlowPreprocessor.fit(train, column_order="dependence")
    order = prep.column_order
    assert sorted(order) == sorted(cols + ["proto"])
    size_family, ttl_family = {"bytes", "packets", "mean_size"}, {"hops", "ttl", "proto"}
    first = set(order[:3])
    assert first in (size_family, ttl_family), order
    assert prep.layout()["names"] == order
    again = FlowPreprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again.layout() == prep.layout() and np.array_equal(again.transform(train), prep.transform(train))
    # shuffled: a permutation that depends on the seed only
    shuffled = [FlowPreprocessor.fit(train, column_order="shuffled", seed=s).column_order for s in (0, 0, 1)]
    assert shuffled[0] == shuffled[1] != shuffled[2] and sorted(shuffled[2]) == sorted(order)
    with pytest.raises(ConfigError, match="data.column_order"):
        FlowPreprocessor.fit(train, column_order="alphabetical")
    # the dependence measure is scikit-learn's normalised mutual information (arithmetic mean)
    codes = rng.integers(0, 6, (4, 500))
    codes[1] = codes[0] // 2
    codes[3] = 0
    nmi = normalised_mutual_information(codes)
    for i in range(4):
        for j in range(i + 1, 4):
            expected = normalized_mutual_info_score(codes[i], codes[j]) if 3 not in (i, j) else 0.0
            assert nmi[i, j] == pytest.approx(expected, abs=1e-12) and nmi[j, i] == nmi[i, j]


@pytest.mark.parametrize("stamps, seconds_apart", [
    (["2017-07-03T08:55:58", "2017-07-03T08:56:00.5"], [2.5]),                    # ISO 8601
    (["2026-03-29T01:59:00+01:00", "2026-03-29T03:01:00+02:00"], [120.0]),        # across a DST switch
    (["3/7/2017 8:55", "3/7/2017 8:57", "13/7/2017 8:57"], [120.0, 864_000.0]),   # day-first (CIC)
    (["06/30/2017 11:59:00 PM", "07/01/2017 12:01:00 AM"], [120.0]),              # month-first (US)
    # ISO rows among day-first ones: ISO still (they were read day-first: 2017-07-04 as 7 April)
    (["2017-07-04 19:36:29", "04/07/2017 07:36:30 PM", "2017-07-05 01:00:00", "13/07/2017 8:00 AM"],
     [1.0, 19_410.0, 716_400.0]),
])
def test_time_texts_keep_their_order(stamps, seconds_apart):
    """A time column orders flows (the split, the windows): offsets that change, and dates read day- or
    month-first by the whole column, never row by row."""
    from mstr.data.readers import to_seconds

    assert np.diff(to_seconds(pd.Series(stamps), "t", "f.csv")).tolist() == pytest.approx(seconds_apart)


def test_time_texts_of_both_date_orders_are_an_error_naming_the_row():
    from mstr.data.readers import to_seconds

    with pytest.raises(DataError, match=r"f.csv: time column 't' mixes day-first and month-first dates \(data row 2"):
        to_seconds(pd.Series(["30/06/2017 23:59", "06/30/2017 00:01"]), "t", "f.csv")
    with pytest.raises(DataError, match=r"mixes day-first and month-first dates \(data row 3: '06/30/2017 00:01'\)"):
        to_seconds(pd.Series(["2017-06-30 23:00", "30/06/2017 23:59", "06/30/2017 00:01"]), "t", "f.csv")


def test_categories_past_max_categories_are_said_to_share_the_unknown_one(caplog):
    """A column of more values than data.max_categories keeps its most frequent ones; the log says how
    many were folded into the unknown category (they were folded without a word)."""
    import logging

    table = _table(n=400, services=[f"s{i}" for i in range(10)])
    with caplog.at_level(logging.INFO, logger="mstr.data.preprocessing"):
        prep = FlowPreprocessor.fit(table, max_categories=4)
    assert len(prep.categories["service"]) == 4
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("t.csv: column 'service' has 10 values; the 4 most frequent are "
                                                 "its categories, the other 6 (")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mstr.data.preprocessing"):
        FlowPreprocessor.fit(table, max_categories=10)
    assert not caplog.records
