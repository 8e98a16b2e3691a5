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
