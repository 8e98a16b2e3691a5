"""`data=flows` on small files cut from the real shared data: a CICFlowMeter CSV (corrected and
original CIC spellings), a labelled Zeek conn.log in the IoT-23 layout, a UNSW parquet file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mstr.data.datasets import cic_ids2017, flows
from mstr.data.preprocessing import FlowPreprocessor
from mstr.errors import ConfigError, DataError

IDENTIFIERS = {"id", "Flow ID", "Src IP", "Dst IP", "Src Port", "Timestamp", "Attempted Category"}


@pytest.fixture(scope="module")
def cic_rows(data_dir) -> pd.DataFrame:
    """2,000 real flows: benign from all days, Friday's port scan and DDoS."""
    parts = [pd.read_csv(data_dir / "cic_ids2017_improved" / f"{name}.csv.gz").head(n)
             for name, n in (("BENIGN_5000", 1200), ("Portscan_5000", 400), ("DDoS_5000", 400))]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def cic_csv(cic_rows, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cic") / "flows.csv"
    cic_rows.to_csv(path, index=False)
    return path


def test_cicflowmeter_csv_roles_time_split_and_same_features_as_cic_loader(cic_csv, data_dir):
    splits = flows.load(str(cic_csv))
    train, test = splits.train, splits.tests["test"]
    assert any("read as cicflowmeter" in n for n in splits.notes)
    assert splits.temporal and train.time_col == "Timestamp" and train.group_col == "Src IP"
    assert not IDENTIFIERS & set(train.feature_cols)
    assert train.categorical_cols == ["Protocol"] and "Dst Port" in train.numeric_cols
    # the same features as data=cic_ids2017 on the same file, so checkpoints carry over
    assert train.numeric_cols == cic_ids2017.load(data_dir, files=[str(cic_csv)]).train.numeric_cols
    assert len(train) == 1400 and len(test) == 600
    assert train.frame["Timestamp"].max() <= test.frame["Timestamp"].min()  # test = the future
    assert set(test.frame["Label"]) == {"benign", "attack"} and train.benign == ("benign",)
    multi = flows.load(str(cic_csv), task="multiclass")
    assert (multi.tests["test"].labels == "DDoS").sum() == 400  # Friday evening: the newest flows
    assert multi.train.benign == ("BENIGN",)


def test_original_cic_spelling_repeated_column_and_infinity(cic_rows, tmp_path):
    """The original MachineLearningCVE/TrafficLabelling CSVs: leading spaces, `Source IP`,
    a repeated `Fwd Header Length`, day-first timestamps and `Infinity` cells."""
    frame = cic_rows.drop(columns=["id", "Attempted Category"]).head(300).copy()
    frame = frame.rename(columns={"Src IP": "Source IP", "Dst Port": "Destination Port"})
    frame["Timestamp"] = pd.to_datetime(frame["Timestamp"]).dt.strftime("%d/%m/%Y %H:%M:%S")
    frame["Flow Bytes/s"] = frame["Flow Bytes/s"].astype(object)
    frame.loc[:4, "Flow Bytes/s"] = "Infinity"
    frame.insert(10, "Fwd Header Length.1", frame["Fwd Header Length"])
    header = [f" {c}" for c in frame.columns]
    header[10] = " Fwd Header Length"
    path = tmp_path / "Friday-WorkingHours.pcap_ISCX.csv"
    path.write_text(",".join(header) + "\n" + frame.to_csv(index=False, header=False))
    splits = flows.load(str(path), format="cicflowmeter")
    train = splits.train
    assert train.time_col == "Timestamp" and train.group_col == "Src IP"
    assert "Destination Port" not in train.numeric_cols and "Dst Port" in train.numeric_cols
    assert list(train.frame.columns).count("Fwd Header Length") == 1
    assert any("repeated column" in n for n in splits.notes)
    assert any("5 infinite" in n for n in splits.notes)
    # kept as read; the preprocessing fit on train fills them
    test = splits.tests["test"]
    assert np.isinf(pd.concat([train.frame, test.frame])["Flow Bytes/s"]).sum() == 5
    assert np.isfinite(FlowPreprocessor.fit(train).transform(test)).all()


def _zeek_log(rows: pd.DataFrame, path: Path) -> None:
    """A Zeek conn.log of real CIC flows, labelled like IoT-23: the last three fields joined by
    spaces, `detailed-label` unset ("-") on benign flows, a `#close` trailer."""
    fields = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes "
              "resp_bytes conn_state local_orig missed_bytes history orig_pkts resp_pkts").split()
    types = ("time string addr port addr port enum string interval count count string bool count string "
             "count count").split()
    attack = rows["Label"] != "BENIGN"
    data = pd.DataFrame({
        "ts": (pd.to_datetime(rows["Timestamp"]) - pd.Timestamp("1970-01-01")).dt.total_seconds().round(6),
        "uid": "C" + rows["id"].astype(str), "id.orig_h": rows["Src IP"], "id.orig_p": rows["Src Port"],
        "id.resp_h": rows["Dst IP"], "id.resp_p": rows["Dst Port"],
        "proto": rows["Protocol"].map({6: "tcp", 17: "udp"}).fillna("icmp"),
        "service": np.where(rows["Dst Port"] == 80, "http", "-"),
        "duration": (rows["Flow Duration"] / 1e6).round(6),
        "orig_bytes": rows["Total Length of Fwd Packet"].astype(int),
        "resp_bytes": rows["Total Length of Bwd Packet"].astype(int),
        "conn_state": np.where(rows["Total Bwd packets"] > 0, "SF", "S0"), "local_orig": "F",
        "missed_bytes": 0, "history": np.where(rows["Total Bwd packets"] > 0, "ShADadFf", "S"),
        "orig_pkts": rows["Total Fwd Packet"], "resp_pkts": rows["Total Bwd packets"],
    })
    data["joined"] = "(empty)   " + np.where(attack, "Malicious", "Benign") + "   " + np.where(
        attack, rows["Label"].str.replace(" ", ""), "-")
    lines = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-",
             "#path\tconn", "#fields\t" + "\t".join(fields) + "\ttunnel_parents   label   detailed-label",
             "#types\t" + "\t".join(types) + "\tset[string]   string   string"]
    body = data.to_csv(sep="\t", header=False, index=False, lineterminator="\n")
    path.write_text("\n".join(lines) + "\n" + body + "#close\t2017-07-08-00-00-00\n")


def test_zeek_conn_log_iot23_layout(cic_rows, tmp_path):
    path = tmp_path / "conn.log.labeled"
    _zeek_log(cic_rows, path)
    splits = flows.load(str(tmp_path))  # a folder: *.labeled is picked up
    train, test = splits.train, splits.tests["test"]
    assert train.time_col == "ts" and train.group_col == "id.orig_h" and splits.temporal
    assert {"proto", "service", "conn_state", "history", "local_orig"} == set(train.categorical_cols)
    assert not {"uid", "id.orig_h", "id.orig_p", "id.resp_h", "tunnel_parents", "label",
                "detailed-label"} & set(train.feature_cols)
    assert "id.resp_p" in train.numeric_cols and "duration" in train.numeric_cols
    assert any("detailed-label" in n and "give the answer away" in n for n in splits.notes)
    assert len(train) + len(test) == 2000 and train.frame["ts"].max() <= test.frame["ts"].min()
    # multiclass on detailed-label: benign rows ("-") take their `label`
    multi = flows.load(str(path), label_col="detailed-label", task="multiclass")
    classes = set(multi.train.labels) | set(multi.tests["test"].labels)
    assert classes == {"Benign", "Portscan", "DDoS"} and multi.train.benign == ("Benign",)


@pytest.fixture(scope="module")
def unsw_parquet(tmp_path_factory, data_dir) -> Path:
    frame = pd.read_csv(data_dir / "unsw_nb15" / "UNSW_NB15_training-set.csv.gz", encoding="utf-8-sig")
    frame = frame.sample(3000, random_state=0)
    path = tmp_path_factory.mktemp("unsw") / "unsw_slice.parquet"
    frame.to_parquet(path, index=False)
    return path


def test_parquet_without_time_is_a_stratified_split_with_leaks_dropped(unsw_parquet):
    splits = flows.load(str(unsw_parquet), benign=0, test_fraction=0.25, seed=3)
    train, test = splits.train, splits.tests["test"]
    assert not splits.temporal and train.time_col is None
    assert any("a window can only be the flow itself" in n for n in splits.notes)
    assert not {"id", "attack_cat", "label"} & set(train.feature_cols)
    assert set(train.categorical_cols) == {"proto", "service", "state"}
    assert len(train) + len(test) == 3000 and abs(len(test) - 750) <= 2
    assert abs(train.is_attack().mean() - test.is_attack().mean()) < 0.01  # stratified
    again = flows.load(str(unsw_parquet), benign=0, test_fraction=0.25, seed=3)
    assert again.tests["test"].frame.equals(test.frame)  # seeded
    multi = flows.load(str(unsw_parquet), label_col="attack_cat", benign="normal", task="multiclass")
    assert "label" not in multi.train.feature_cols and multi.train.benign == ("Normal",)


def test_nfstream_csv(cic_rows, tmp_path):
    """NFStream's to_csv() layout (a subset of its columns), filled from real CIC flows."""
    ms = (pd.to_datetime(cic_rows["Timestamp"]) - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)
    frame = pd.DataFrame({
        "id": range(len(cic_rows)), "expiration_id": 0, "src_ip": cic_rows["Src IP"], "src_mac": "aa:bb",
        "src_port": cic_rows["Src Port"], "dst_ip": cic_rows["Dst IP"], "dst_port": cic_rows["Dst Port"],
        "protocol": cic_rows["Protocol"], "ip_version": 4, "bidirectional_first_seen_ms": ms,
        "bidirectional_last_seen_ms": ms + cic_rows["Flow Duration"] // 1000,
        "bidirectional_duration_ms": cic_rows["Flow Duration"] // 1000,
        "bidirectional_packets": cic_rows["Total Fwd Packet"] + cic_rows["Total Bwd packets"],
        "src2dst_bytes": cic_rows["Total Length of Fwd Packet"],
        "application_name": np.where(cic_rows["Dst Port"] == 80, "HTTP", "Unknown"),
        "requested_server_name": "host" + cic_rows["id"].astype(str), "label": cic_rows["Label"],
    })
    path = tmp_path / "capture.csv"
    frame.to_csv(path, index=False)
    splits = flows.load(str(path), benign="BENIGN")
    train = splits.train
    assert train.time_col == "bidirectional_first_seen_ms" and train.group_col == "src_ip"
    assert set(train.categorical_cols) == {"protocol", "application_name"}
    assert set(train.numeric_cols) == {"dst_port", "ip_version", "bidirectional_duration_ms",
                                       "bidirectional_packets", "src2dst_bytes"}


def test_separate_test_files_and_their_checks(cic_rows, tmp_path):
    train_path, test_dir = tmp_path / "train.csv", tmp_path / "tests"
    test_dir.mkdir()
    cic_rows.iloc[::2].to_csv(train_path, index=False)
    cic_rows.iloc[1::2].head(100).to_csv(test_dir / "monday.csv", index=False)
    cic_rows.iloc[1::2].tail(100).to_csv(test_dir / "friday.csv.gz", index=False)
    splits = flows.load(str(train_path), test_path=str(test_dir))
    assert len(splits.train) == 1000 and set(splits.tests) == {"monday", "friday"}
    assert splits.tests["friday"].numeric_cols == splits.train.numeric_cols
    cic_rows.drop(columns=["Flow Duration"]).head(50).to_csv(test_dir / "monday.csv", index=False)
    with pytest.raises(DataError, match=r"monday.csv: missing column\(s\) \['Flow Duration'\]"):
        flows.load(str(train_path), test_path=str(test_dir))
    bad = cic_rows.head(50).astype({"Flow Duration": object})
    bad.loc[7, "Flow Duration"] = "oops"
    bad.to_csv(test_dir / "monday.csv", index=False)
    with pytest.raises(DataError, match=r"'Flow Duration' data row 8 holds 'oops'"):
        flows.load(str(train_path), test_path=str(test_dir))


def test_test_files_of_one_name_in_several_folders_are_named_by_their_folders(cic_rows, tmp_path):
    """IoT-23 names every scenario's log conn.log.labeled: several scenarios given as test files were
    refused ("two test files are named 'conn'; rename one of them")."""
    cic_rows.iloc[::2].to_csv(tmp_path / "train.csv", index=False)
    for scenario in ("CTU-1-1", "CTU-3-1"):
        (tmp_path / "iot" / scenario / "bro").mkdir(parents=True)
        cic_rows.iloc[1::2].head(60).to_csv(tmp_path / "iot" / scenario / "bro" / "conn.csv", index=False)
    cic_rows.iloc[1::2].tail(60).to_csv(tmp_path / "iot" / "extra.csv", index=False)
    splits = flows.load(str(tmp_path / "train.csv"), test_path=str(tmp_path / "iot" / "**" / "*.csv"))
    assert set(splits.tests) == {"CTU-1-1_bro_conn", "CTU-3-1_bro_conn", "extra"}
    assert splits.tests["CTU-3-1_bro_conn"].source.endswith("CTU-3-1/bro/conn.csv")
    cic_rows.iloc[1::2].head(60).to_csv(tmp_path / "iot" / "extra.csv.gz", index=False)  # one folder: no telling apart
    with pytest.raises(DataError, match="two test files are named 'extra'; rename one of them"):
        flows.load(str(tmp_path / "train.csv"), test_path=str(tmp_path / "iot" / "**" / "*.csv*"))


def test_generic_csv_with_delimiter_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"bytes": rng.integers(0, 9999, 400), "proto": rng.choice(["tcp", "udp"], 400),
                          "class": rng.choice(["ok", "scan"], 400), "when": np.arange(400) * 1.5})
    path = tmp_path / "mine.csv"
    frame.to_csv(path, sep=";", index=False)
    splits = flows.load(str(path), delimiter=";", benign="ok", time_col="when")
    assert splits.train.numeric_cols == ["bytes"] and splits.train.categorical_cols == ["proto"]
    assert splits.train.label_col == "class" and splits.temporal
    with pytest.raises(ConfigError, match="data.path is not set"):
        flows.load()
    with pytest.raises(DataError, match="no flow is labelled benign.*set data.benign"):
        flows.load(str(path), delimiter=";")
    with pytest.raises(DataError, match="data.label_col names column 'verdict', which is not in the file; columns"):
        flows.load(str(path), delimiter=";", label_col="verdict")
    with pytest.raises(DataError, match="data.time_col names column 'When', .* did you mean data.time_col='when'"):
        flows.load(str(path), delimiter=";", benign="ok", time_col="When")
    with pytest.raises(ConfigError, match="data.format='pcap'"):
        flows.load(str(path), format="pcap")
    frame["bytes"] = frame["bytes"].astype(object)
    frame.loc[123, "bytes"] = "12,5"  # one broken cell in a column of numbers is not a category
    frame.to_csv(path, sep=";", index=False)
    with pytest.raises(DataError, match="column 'bytes' data row 124 holds '12,5'"):
        flows.load(str(path), delimiter=";", benign="ok")
    frame["bytes"] = [f"{v},5" for v in range(400)]  # every number with a decimal comma: not 400 categories
    frame.to_csv(path, sep=";", index=False)
    with pytest.raises(DataError, match=r"column 'bytes' holds numbers written with a decimal comma \('0,5'\)"):
        flows.load(str(path), delimiter=";", benign="ok")


def test_addresses_and_source_ports_among_the_features_are_named(tmp_path):
    """A generic layout's host addresses and source ports would teach a model this capture's hosts: the
    loader names them (a destination port is a service, a fair feature; the group column is no feature)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"Src IP": rng.choice(["10.0.0.1", "10.0.0.2"], 300), "dst": rng.choice(["a", "b"], 300),
                          "sport": rng.integers(1024, 65535, 300), "dport": rng.choice([22, 80], 300),
                          "host": rng.choice(["h1", "h2"], 300), "bytes": rng.integers(0, 999, 300),
                          "local_orig": ["-"] * 300, "label": rng.choice(["benign", "scan"], 300)})
    frame.to_csv(tmp_path / "mine.csv", index=False)
    splits = flows.load(str(tmp_path / "mine.csv"), group_col="host")
    (note,) = [n for n in splits.notes if "look like host addresses" in n]
    assert "['Src IP', 'dst', 'sport']" in note and "data.drop_cols=[Src IP,dst,sport]" in note
    # a column without a single value (Zeek's local_orig, unset) is no feature
    assert "local_orig" not in splits.train.numeric_cols and "local_orig" not in splits.train.categorical_cols
    assert any("dropped column(s) ['local_orig']: no value in any row" in n for n in splits.notes)


def test_data_flows_config_trains_end_to_end_shapes(cic_csv, compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg(["data=flows", f"data.path={cic_csv}", "data.window=4"])
    dm = instantiate(cfg.data)
    dm.setup()
    assert dm.class_names == ["benign", "attack"] and dm.window == 4
    x, y = next(iter(dm.test_loaders()["test"]))
    assert x.shape[1:] == (4, dm.num_features) and len(y) == len(x)
    assert dm.audit["preprocessing_fit_rows"] == len(dm.tables["train"])


def test_a_validation_carve_of_one_class_is_warned_about(tmp_path, compose_cfg, caplog):
    """Attacks in episodes, the newest flows all benign: a time carve gives a validation set that cannot
    choose a checkpoint, and the run says so."""
    import logging

    from hydra.utils import instantiate

    n = 1000
    frame = pd.DataFrame({"when": np.arange(n) * 1.0, "bytes": np.arange(n) % 97,
                          "label": ["scan" if 100 <= i < 300 else "benign" for i in range(n)]})
    frame.to_csv(tmp_path / "mine.csv", index=False)
    dm = instantiate(compose_cfg(["data=flows", f"data.path={tmp_path / 'mine.csv'}", "data.time_col=when"]).data)
    with caplog.at_level(logging.WARNING, logger="mstr.data.datamodule"):
        dm.setup()
    assert any("validation holds only ['benign'] flows" in r.getMessage() for r in caplog.records)


def test_binary_flows_cut_by_attack_type_and_report_the_types_training_never_had(cic_rows, tmp_path, compose_cfg):
    """A binary model of a file with several attack names: the per-class cut keeps each attack type on
    every side (by benign/attack alone, 30 rows of a rare type could all land in one split), the names
    are never a feature, and a test file's attack type absent from training is scored on its own."""
    from hydra.utils import instantiate

    rare = cic_rows[cic_rows["Label"] == "DDoS"].head(30)
    train_rows = pd.concat([cic_rows[cic_rows["Label"] != "DDoS"], rare], ignore_index=True)
    train_rows.to_csv(tmp_path / "train.csv", index=False)
    base = ["data=flows", f"data.path={tmp_path / 'train.csv'}", "data.window=1"]
    dm = instantiate(compose_cfg([*base, "data.split=per_class_time"]).data)
    dm.setup()
    sides = [dm.tables[s] for s in ("train", "val", "test_test")]
    for side in sides:
        assert set(side.labels) == {"benign", "attack"} and "label_name" not in side.feature_cols
        assert (side.frame["label_name"] == "DDoS").sum() >= 1
    assert dm.test_subsets()["novel_attack"]["test"].sum() == 0  # every test type was trained on
    cic_rows[cic_rows["Label"] != "DDoS"].to_csv(tmp_path / "train.csv", index=False)
    cic_rows[cic_rows["Label"] != "Portscan"].tail(600).to_csv(tmp_path / "unseen.csv", index=False)
    dm = instantiate(compose_cfg([*base, f"data.test_path={tmp_path / 'unseen.csv'}"]).data)
    dm.setup()
    test = dm.tables["test_unseen"]
    novel = dm.test_subsets()["novel_attack"]["unseen"]
    assert novel.sum() == (test.frame["label_name"] == "DDoS").sum() == 400
    assert not novel[test.frame["label_name"].to_numpy() == "BENIGN"].any()


def test_a_per_class_time_split_puts_every_class_in_train_validation_and_test(tmp_path, compose_cfg, caplog):
    """The same episodic file cut per class by time (data.split=per_class_time): every class on every side,
    each side's flows of a class later than the side before it; a bad value or no time column: one line."""
    import logging

    from hydra.utils import instantiate

    n = 1000
    frame = pd.DataFrame({"when": np.arange(n) * 1.0, "bytes": np.arange(n) % 97,
                          "label": ["scan" if 100 <= i < 300 else "benign" for i in range(n)]})
    frame.to_csv(tmp_path / "mine.csv", index=False)
    base = ["data=flows", f"data.path={tmp_path / 'mine.csv'}", "data.time_col=when"]
    dm = instantiate(compose_cfg([*base, "data.split=per_class_time"]).data)
    with caplog.at_level(logging.WARNING, logger="mstr.data.datamodule"):
        dm.setup()
    assert not any("validation holds only" in r.getMessage() for r in caplog.records)
    assert dm.holdout == "per_class_time"
    sides = [dm.tables[s] for s in ("train", "val", "test_test")]
    times = [{c: s.frame.loc[s.labels == c, "when"].to_numpy() for c in ("benign", "attack")} for s in sides]
    for cls in ("benign", "attack"):
        assert all(len(side[cls]) for side in times)
        assert times[0][cls].max() < times[1][cls].min() and times[1][cls].max() < times[2][cls].min()
    assert len(times[2]["attack"]) == 60 and len(times[2]["benign"]) == 240  # 30% of each class
    with pytest.raises(ConfigError, match="data.split='by_host' is not one of"):
        instantiate(compose_cfg([*base, "data.split=by_host"]).data).setup()
    frame.drop(columns="when").to_csv(tmp_path / "untimed.csv", index=False)
    with pytest.raises(ConfigError, match="data.split=per_class_time: .*has no time column"):
        instantiate(compose_cfg(["data=flows", f"data.path={tmp_path / 'untimed.csv'}",
                                 "data.split=per_class_time"]).data).setup()


def test_a_class_is_one_class_whatever_the_case_of_its_label(tmp_path):
    """'DoS' in one file and 'DOS' or 'dos' in another (or the same): one class, spelt as training's
    files mostly spell it; before, a test file's 'benign' was a label never seen in training."""
    rng = np.random.default_rng(0)

    def write(name, labels):
        pd.DataFrame({"bytes": rng.integers(0, 999, len(labels)), "label": labels}).to_csv(tmp_path / name, index=False)

    write("train.csv", ["Benign "] * 200 + ["DoS"] * 80 + ["DOS"] * 20 + ["Botnet"] * 100)
    write("test.csv", ["benign"] * 50 + ["dos"] * 30 + ["BOTNET"] * 20)
    splits = flows.load(str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"), task="multiclass")
    assert sorted(set(splits.train.labels)) == ["Benign", "Botnet", "DoS"]
    assert sorted(set(splits.tests["test"].labels)) == ["Benign", "Botnet", "DoS"]
    assert any("['DOS'] read as ['DoS']" in n for n in splits.notes)
    # a blank label cell (and a short row's missing one) is a row without a label: dropped and counted
    write("blank.csv", ["Benign"] * 200 + [None] * 3 + ["DoS"] * 97)  # it was a traceback in _spelt
    splits = flows.load(str(tmp_path / "blank.csv"), task="multiclass")
    assert len(splits.train) + sum(len(t) for t in splits.tests.values()) == 297
    assert any("dropped 3 row(s) without a label" in n for n in splits.notes)


def test_one_column_in_two_roles_and_rows_cut_short_are_refused_naming_them(cic_csv, tmp_path):
    """A column given as both label and time (or time where the layout's host column is) was read twice
    and crashed; a row with fewer fields than the header (a file cut off mid-row) was read with its
    missing cells empty: a label cut to "BENI" becomes a class of its own."""
    with pytest.raises(ConfigError, match=r"column 'Label' is both data.label_col \(the layout's default\) "
                                          r"and data.time_col; give each role a column of its own"):
        flows.load(str(cic_csv), time_col="Label")
    with pytest.raises(ConfigError, match=r"column 'Src IP' is both data.time_col and data.group_col "
                                          r"\(the layout's default\)"):
        flows.load(str(cic_csv), time_col="Src IP")
    text = cic_csv.read_text()
    cut = tmp_path / "cut.csv"
    cut.write_text(text.rstrip("\n")[:-40])  # the last row cut inside its last fields
    fields = text.splitlines()[0].count(",") + 1
    with pytest.raises(DataError, match=rf"cut.csv: data row 2000 has \d+ fields where the header has {fields} "
                                        r"\(a truncated file, or a broken line\); fix or remove that row"):
        flows.load(str(cut))
    lines = text.splitlines()
    lines[5] = ",".join(lines[5].split(",")[:10])
    (tmp_path / "short.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"short.csv: data row 5 has 10 fields"):
        flows.load(str(tmp_path / "short.csv"))
    lines = text.splitlines()
    lines[3] = lines[3].replace("DDoS", "").replace("BENIGN", "")  # an empty label cell is a field still
    (tmp_path / "blank.csv").write_text("\n".join(lines) + "\n")
    splits = flows.load(str(tmp_path / "blank.csv"))  # dropped as unlabelled, as before
    assert len(splits.train) + len(splits.tests["test"]) == 1999


def test_a_file_that_is_not_utf8_is_read_as_windows_1252_and_says_so(tmp_path, caplog):
    import logging

    accented = "s\xe9rvice"
    rows = "".join(f"{i},{accented if i == 3 else 'http'},{'attack' if i % 4 == 0 else 'benign'}\n" for i in range(40))
    (tmp_path / "old.csv").write_bytes(("bytes,service,label\n" + rows).encode("cp1252"))
    with caplog.at_level(logging.WARNING, logger="mstr.data.readers"):
        splits = flows.load(str(tmp_path / "old.csv"))
    assert "old.csv: not UTF-8 text: read as Windows-1252" in caplog.text
    services = set(splits.train.frame["service"]) | set(splits.tests["test"].frame["service"])
    assert services == {"http", accented}  # the byte 0xe9 read as the letter it is in that code page


def test_a_quoted_cell_across_lines_is_no_short_row_and_rows_after_it_are_still_counted(tmp_path):
    from mstr.data.readers import read_table

    text = 'a,b,label\n1,"two\nlines\nof text",benign\n3,"x,y",attack\n5,6,benign\n'
    (tmp_path / "quoted.csv").write_text(text)
    assert read_table(tmp_path / "quoted.csv").shape == (3, 3)
    (tmp_path / "short.csv").write_text(text + "7,8\n")
    with pytest.raises(DataError, match=r"short.csv: data row 4 has 2 fields where the header has 3"):
        read_table(tmp_path / "short.csv")


def test_a_repeated_column_whose_copy_differs_is_a_warning_naming_it_and_the_rows_lost(tmp_path, caplog):
    import logging

    from mstr.data.readers import read_table

    for name, copy in (("same", lambda i: i * 2), ("differ", lambda i: i * 2 if i < 7 else 0)):
        rows = "".join(f"{i},{i * 2},{copy(i)},benign\n" for i in range(10))
        (tmp_path / f"{name}.csv").write_text("a,size,size,label\n" + rows)
    with caplog.at_level(logging.INFO, logger="mstr.data.readers"):
        same = read_table(tmp_path / "same.csv", duplicate_columns="keep_first")
        assert not caplog.records  # an exact copy: a note, no warning
        differ = read_table(tmp_path / "differ.csv", duplicate_columns="keep_first")
    assert list(same.columns) == list(differ.columns) == ["a", "size", "label"]
    assert differ["size"].tolist() == [i * 2 for i in range(10)]  # the first copy is the one read
    assert "copies of the first" in same.attrs["notes"][0]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [f"{tmp_path / 'differ.csv'}: column 'size' is repeated and its later copy differs from the "
                      "first in 3 row(s); only the first is read: rename the copy if both are wanted"]


@pytest.mark.parametrize("override, message", [
    # an empty path is "." to pathlib: every table in the folder the command ran in was read as flows
    ("data.path=", "data.path is empty"),
    ("data.test_path=", "data.test_path is empty"),
    # a list was a TypeError traceback from pathlib
    ("data.test_path=[a.csv,b.csv]", "data.test_path=['a.csv', 'b.csv']: give one file, folder or glob"),
    ("data.test_path=20240101", """data.test_path=20240101: read as a number; quote a name of digits: """
                                """'data.test_path="20240101"'"""),
    # these failed only once the job had made its run dir, leaving a failed run behind
    ("data.format=conn", "data.format='conn' is not one of"),
    ("data.split=random", "data.split='random' is not one of"),
    ("data.test_fraction=1.5", "data.test_fraction=1.5 must be between 0 and 1"),
])
def test_flows_settings_are_refused_before_any_file_is_read(override, message, tmp_path, monkeypatch):
    from mstr.preflight import preflight

    pd.DataFrame({"bytes": [1, 2], "label": ["benign", "dos"]}).to_csv(tmp_path / "other.csv", index=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        preflight(["data=flows", "data.path=flows.csv", override], "train")


def test_a_bad_cell_is_named_by_its_own_file_and_row(cic_rows, tmp_path):
    """Rows were numbered after the files of a folder were stacked ('data.path (2 files): ... data row
    1305') and after unlabelled rows were dropped (a bad time 2 rows below where it was said to be)."""
    rows = cic_rows.drop(columns=["id"]).head(600).astype({"Flow Duration": object, "Timestamp": object})
    (tmp_path / "day").mkdir()
    rows.head(300).to_csv(tmp_path / "day" / "a.csv", index=False)
    second = rows.tail(300).reset_index(drop=True)
    second.loc[4, "Flow Duration"] = "abc"
    second.to_csv(tmp_path / "day" / "b.csv", index=False)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'day' / 'b.csv'}: column 'Flow Duration' data row 5 "
                                                  "holds 'abc'")):
        flows.load(str(tmp_path / "day"))
    second.loc[4, "Flow Duration"] = 1000
    second.loc[9, "Timestamp"] = "yesterday"
    second.to_csv(tmp_path / "day" / "b.csv", index=False)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'day' / 'b.csv'}: time column 'Timestamp' data row 10 "
                                                  "holds 'yesterday'")):
        flows.load(str(tmp_path / "day"))
    second.loc[[1, 3], "Label"] = None  # dropped as unlabelled: the rows after them keep their numbers
    second.to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'one.csv'}: time column 'Timestamp' data row 10 ")):
        flows.load(str(tmp_path / "one.csv"))


def test_a_flow_without_a_time_is_named_not_the_first_number_of_its_column(tmp_path):
    """One empty `ts` cell in a column of Unix times: the error named data row 1 ('holds 1499083612.5,
    not a time'), a good row, since the column no longer read as numbers."""
    frame = pd.DataFrame({"ts": [1499083612.5 + i for i in range(40)], "bytes": range(40),
                          "label": ["benign", "dos"] * 20})
    frame.loc[6, "ts"] = np.nan
    frame.to_csv(tmp_path / "flows.csv", index=False)
    with pytest.raises(DataError, match=re.escape("flows.csv: time column 'ts' data row 7 has no time (1 such row(s))")):
        flows.load(str(tmp_path / "flows.csv"), time_col="ts")


def test_a_class_only_after_the_time_cut_is_told_the_per_class_cut(tmp_path):
    """Attacks only in the newest flows: the note said 'use data.task=binary' to a binary run."""
    frame = pd.DataFrame({"ts": np.arange(40.0), "bytes": range(40), "label": ["benign"] * 30 + ["dos"] * 10})
    frame.to_csv(tmp_path / "flows.csv", index=False)
    notes = flows.load(str(tmp_path / "flows.csv"), time_col="ts", test_fraction=0.25).notes
    note = next(n for n in notes if "occur only in the test split" in n)
    assert "['attack']" in note and "data.split=per_class_time" in note and "data.task=binary" not in note


def test_zeek_columns_in_csv_files_take_test_files_of_that_layout(cic_rows, tmp_path):
    """A conn.log saved as CSV trains with Zeek's roles; a test file of the same CSV layout was read as a
    Zeek log ('Zeek log without a '#fields' header line')."""
    from mstr.data.readers import read_table

    _zeek_log(cic_rows, tmp_path / "conn.log")
    rows = read_table(tmp_path / "conn.log")
    rows.iloc[:1500].to_csv(tmp_path / "train.csv", index=False)
    rows.iloc[1500:].to_csv(tmp_path / "test.csv", index=False)
    splits = flows.load(str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"))
    assert splits.train.time_col == "ts" and splits.train.group_col == "id.orig_h"
    assert len(splits.tests["test"]) == 500
    assert splits.tests["test"].feature_cols == splits.train.feature_cols
    with pytest.raises(DataError, match="test.csv: Zeek log without a '#fields' header line"):
        flows.load(str(tmp_path / "conn.log"), test_path=str(tmp_path / "test.csv"), format="zeek")  # as told


def test_a_cicflowmeter_file_of_tabs_named_csv_keeps_its_roles_with_the_delimiter_the_error_names(cic_csv, tmp_path):
    """The error said 'set data.format=tsv', which reads the file with the generic roles: Src IP, Dst IP,
    Src Port and Timestamp became features and the time split a stratified one. It now names the
    delimiter alone, typed as Hydra passes it ("\\t"), which keeps CICFlowMeter's roles."""
    path = tmp_path / "flows.csv"
    pd.read_csv(cic_csv).to_csv(path, sep="\t", index=False)
    with pytest.raises(DataError, match=re.escape("""set 'data.delimiter="\\t"'""")):
        flows.load(str(path))
    splits = flows.load(str(path), delimiter="\\t")
    assert splits.temporal and splits.train.group_col == "Src IP"
    assert not IDENTIFIERS & set(splits.train.feature_cols)
    from omegaconf import OmegaConf

    from mstr.training.export import input_spec

    data = OmegaConf.create({"name": "flows", "format": None, "delimiter": "\\t"})
    columns = {"time_col": "Timestamp", "group_col": "Src IP", "read_as": "cicflowmeter", "file_format": "csv"}
    assert input_spec(data, columns)["delimiter"] == "\t"  # the detector reads tabs too


def test_a_column_without_a_name_is_no_feature(tmp_path):
    """`frame.to_csv(path)` without index=False writes the row index under an empty name: it was a numeric
    feature ('Unnamed: 0': in a file ordered by class, the answer), which no detector can find by name."""
    frame = pd.DataFrame({"bytes": range(60), "label": ["benign"] * 40 + ["dos"] * 20})
    frame.to_csv(tmp_path / "flows.csv")
    splits = flows.load(str(tmp_path / "flows.csv"))
    assert splits.train.feature_cols == ["bytes"]
    assert any("dropped column(s) ['Unnamed: 0']: no name in the header" in n for n in splits.notes)


def test_a_column_of_absolute_times_among_the_features_is_named(tmp_path):
    """A generic table's Unix-time column has no role unless data.time_col names it: it was a numeric
    feature without a word (test flows all later than training's: the model reads when, not what)."""
    frame = pd.DataFrame({"Timestamp": 1.5e9 + np.arange(60), "bytes": range(60), "label": ["benign", "dos"] * 30})
    frame.to_csv(tmp_path / "flows.csv", index=False)
    notes = flows.load(str(tmp_path / "flows.csv")).notes
    assert any("['Timestamp'] look like absolute times, and are features" in n and "data.time_col=Timestamp" in n
               for n in notes)
    assert not any("absolute times" in n for n in flows.load(str(tmp_path / "flows.csv"), time_col="Timestamp").notes)
