"""The one splits module: each rule on its own, and validation carved by the rule of the test split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mstr.data.splits import (PER_CLASS_TIME, STRATIFIED, TIME, hold_out, newest, newest_per_class,
                              unseen_types_mask)
from mstr.data.table import FlowTable


def _table(labels, times=None) -> FlowTable:
    frame = pd.DataFrame({"x": np.arange(len(labels), dtype=float), "label": labels})
    if times is not None:
        frame["t"] = times
    return FlowTable(frame, ["x"], [], time_col="t" if times is not None else None)


def test_time_cut_holds_the_newest_rows_in_table_order():
    times = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 0.0])
    held = newest(times, 0.3)
    assert sorted(times[held]) == [7.0, 8.0, 9.0]
    kept, out = hold_out(_table(["a", "b"] * 5, times), 0.3, TIME)
    assert kept.frame["x"].tolist() == [0, 1, 3, 5, 7, 8, 9]  # positions in the table's own order
    assert kept.frame["t"].max() < out.frame["t"].min()


def test_per_class_time_cut_puts_every_class_on_both_sides_later_than_its_kept_rows():
    # class b lives only at the end of the span: a single time cut would hold out all of it
    labels = np.array(["a"] * 20 + ["b"] * 5 + ["c"])
    times = np.r_[np.arange(20.0), 100.0 + np.arange(5.0), 50.0]
    global_cut = newest(times, 0.2)
    assert set(labels[global_cut]) == {"b"} and not (labels[~global_cut] == "b").any()
    held = newest_per_class(labels, times, 0.2)
    assert held[labels == "a"].sum() == 4 and held[labels == "b"].sum() == 1
    assert not held[labels == "c"].any()  # a single row stays kept
    for cls in ("a", "b"):
        rows = labels == cls
        assert times[rows & ~held].max() < times[rows & held].min()
    # without times, row order is time order
    assert newest_per_class(np.array(["a"] * 4), None, 0.5).tolist() == [False, False, True, True]


def test_stratified_cut_is_seeded_and_per_class():
    labels = np.array(["a"] * 80 + ["b"] * 20)
    kept, held = hold_out(_table(labels), 0.25, STRATIFIED, seed=3)
    assert (held.labels == "b").sum() == 5 and (held.labels == "a").sum() == 20
    again, _ = hold_out(_table(labels), 0.25, STRATIFIED, seed=3)
    other, _ = hold_out(_table(labels), 0.25, STRATIFIED, seed=4)
    assert kept.frame.equals(again.frame) and not kept.frame.equals(other.frame)


def test_cuts_follow_the_strata_column_where_the_label_is_coarser():
    frame = pd.DataFrame({"x": np.arange(10.0), "label": ["benign"] * 6 + ["attack"] * 4,
                          "kind": ["BENIGN"] * 6 + ["DoS", "DoS", "Scan", "Scan"], "t": np.arange(10.0)})
    table = FlowTable(frame, ["x"], [], time_col="t", strata_col="kind")
    kept, held = hold_out(table, 0.5, PER_CLASS_TIME)
    assert sorted(held.frame["kind"]) == ["BENIGN", "BENIGN", "BENIGN", "DoS", "Scan"]


def test_cic_validation_is_carved_per_class_by_time_like_its_test_split(data_dir):
    """The real files, multi-class: every class with enough rows is in train, validation and test, and
    each class's validation flows are later than its training flows (a single time cut put every DDoS
    training flow into validation, so training never saw DDoS). The carve is the DataModule's."""
    from mstr.data.datasets import cic_ids2017

    splits = cic_ids2017.load(data_dir, task="multiclass")
    assert splits.holdout == PER_CLASS_TIME
    train, val = hold_out(splits.train, 0.15, splits.holdout)  # FlowDataModule.setup's carve
    train, val, test = train.frame, val.frame, splits.tests["test"].frame
    classes = set(train["Label"])
    assert len(classes) == 16 and set(val["Label"]) == classes == set(test["Label"])
    for label, rows in val.groupby("Label"):
        assert train.loc[train["Label"] == label, "Timestamp"].max() <= rows["Timestamp"].min(), label


@pytest.mark.parametrize("rule", [TIME, PER_CLASS_TIME, STRATIFIED])
def test_bad_fractions_are_config_errors(rule):
    from mstr.errors import ConfigError

    with pytest.raises(ConfigError, match="fraction"):
        hold_out(_table(["a", "b"], [0.0, 1.0]), 1.0, rule)


def _typed_table() -> FlowTable:
    """Labels by category (multi-class), attack types under them: dos has 3 types, probe 2, r2l 1."""
    kinds = {"normal": ("normal", 50), "neptune": ("dos", 40), "smurf": ("dos", 6), "pod": ("dos", 3),
             "satan": ("probe", 5), "nmap": ("probe", 4), "guess_passwd": ("r2l", 2)}
    rows = [(kind, label) for kind, (label, n) in kinds.items() for _ in range(n)]
    frame = pd.DataFrame({"x": np.arange(len(rows), dtype=float), "label": [r[1] for r in rows],
                          "attack_type": [r[0] for r in rows]})
    return FlowTable(frame, ["x"], [], benign=("normal",), family_col="attack_type")


def test_unseen_types_are_whole_attack_types_within_the_share_and_every_class_keeps_one():
    table = _typed_table()
    family = table.frame["attack_type"].to_numpy()
    for seed in range(20):
        held, types = unseen_types_mask(table, 0.2, seed)  # a budget of 0.2 x 60 attack rows = 12, which
        assert types and set(family[held]) == set(types) and "normal" not in types  # binds: smurf, pod and
        assert held.sum() <= 12 and "neptune" not in types  # satan (14) would fit the other rules; 40 never
        for t in types:  # a type is held whole or not at all
            assert held[family == t].all()
        kept_labels = set(table.labels[~held])
        assert kept_labels == {"normal", "dos", "probe", "r2l"}  # guess_passwd, r2l's only type, stays
        assert not {"satan", "nmap"} <= set(types)  # probe keeps one of its two
    draws = {tuple(unseen_types_mask(table, 0.2, seed)[1]) for seed in range(20)}
    assert len(draws) > 1 and unseen_types_mask(table, 0.2, 7)[1] == unseen_types_mask(table, 0.2, 7)[1]


def test_unseen_types_need_attack_types_and_a_share_that_fits_one():
    from mstr.errors import ConfigError

    with pytest.raises(ConfigError, match="no attack types"):
        unseen_types_mask(_table(["a", "b"] * 4), 0.5, 0)
    with pytest.raises(ConfigError, match="smallest has 2"):
        unseen_types_mask(_typed_table(), 0.02, 0)  # 1.2 rows: not even guess_passwd's 2


def test_nsl_kdd_validation_holds_whole_unseen_types_and_train_never_sees_them(data_dir):
    """The real KDDTrain+ (20% file): `data.val_unseen_types` moves whole attack types from train into
    the validation carve and nothing else; preprocessing is fitted on what is left; the types are named
    in the run's facts; test's own novel-attack rows are unchanged."""
    from functools import partial

    from mstr.data.datamodule import FlowDataModule
    from mstr.data.datasets import nsl_kdd

    source = partial(nsl_kdd.load, data_dir, task="binary", variant="20percent", test_files=["KDDTest+"])
    plain = FlowDataModule(source, name="nsl_kdd", window=1, seed=1)
    plain.setup()
    dm = FlowDataModule(source, name="nsl_kdd", window=1, seed=1, val_unseen_types=0.1)
    dm.setup()
    train, val = dm.tables["train"].frame, dm.tables["val"].frame
    types = dm.facts["data/val_unseen_types"].split(",")
    assert types and not train["attack_type"].isin(types).any()
    moved = plain.tables["train"].frame["attack_type"].isin(types)
    assert len(val) - len(plain.tables["val"]) == moved.sum()
    # every row of a held type counts, the ones the random carve had already put into validation too
    held = val["attack_type"].isin(types)
    assert dm.facts["data/val_unseen_type_rows"] == held.sum() == dm.val_unseen.sum() > moved.sum()
    assert (dm.val_unseen == held.to_numpy()).all()
    assert 0 < moved.sum() <= 0.1 * plain.tables["train"].is_attack().sum()  # the budget: attack rows only
    assert len(train) == len(plain.tables["train"]) - moved.sum() == dm.preprocessor.fit_rows
    assert (dm.novel["KDDTest+"] == plain.novel["KDDTest+"]).all()
    assert dm.audit["val_selection"] == "stratified+unseen_types"


def test_unseen_types_refuse_data_cut_by_time():
    from functools import partial

    from mstr.data.datamodule import FlowDataModule
    from mstr.data.datasets.synthetic import load
    from mstr.errors import ConfigError

    dm = FlowDataModule(partial(load, n_flows=500, task="binary"), name="synthetic", window=4, val_unseen_types=0.1)
    with pytest.raises(ConfigError, match="cut by time"):
        dm.setup()
