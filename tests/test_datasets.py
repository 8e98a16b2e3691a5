"""Dataset loaders on the real shared files, and readers.py against hostile input.

The real data is the `data_dir` fixture (MSTR_data_dir, default ../shared/data next to the repo); tests
that need it fail when it is absent (a skipped real path would hide a broken loader). Expected counts
come from each dataset's SOURCE.md.
"""

from __future__ import annotations

import bz2
import gzip

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstr.data.datasets import cic_ids2017, nsl_kdd, unsw_nb15
from mstr.data.readers import coerce_numeric, read_table, resolve_paths
from mstr.errors import ConfigError, DataError

# --------------------------------------------------------------------------- NSL-KDD


@pytest.fixture(scope="module")
def nsl_full(data_dir):
    return nsl_kdd.load(data_dir, task="multiclass", variant="full")


def test_nsl_full_multiclass_counts(nsl_full):
    train, test = nsl_full.train, nsl_full.tests["KDDTest+"]
    assert len(train) == 125_973 and len(test) == 22_544
    assert train.frame["label"].value_counts().to_dict() == {
        "normal": 67_343, "DoS": 45_927, "Probe": 11_656, "R2L": 995, "U2R": 52,
    }
    assert test.frame["label"].value_counts().to_dict() == {
        "normal": 9_711, "DoS": 7_458, "R2L": 2_887, "Probe": 2_421, "U2R": 67,
    }
    assert train.benign == ("normal",) and int(test.is_attack().sum()) == 12_833
    assert "difficulty" not in train.frame.columns and len(train.numeric_cols) == 38
    assert train.categorical_cols == ["protocol_type", "service", "flag"]
    assert nsl_full.temporal is False


def test_nsl_20percent_binary_and_extra_test_file(tmp_path, data_dir):
    # A KDDTest-21-like file given by absolute path: same format, keyed by its stem.
    lines = gzip.open(data_dir / "nsl_kdd" / "KDDTest+.txt.gz", "rt").readlines()[:200]
    extra = tmp_path / "KDDTest-21.txt"
    extra.write_text("".join(lines))
    splits = nsl_kdd.load(data_dir, variant="20percent", test_files=["KDDTest+", str(extra)])
    counts = splits.train.frame["label"].value_counts().to_dict()
    assert counts == {"benign": 13_449, "attack": 11_743}
    assert set(splits.tests) == {"KDDTest+", "KDDTest-21"}
    assert len(splits.tests["KDDTest-21"]) == 200
    assert int(splits.tests["KDDTest+"].is_attack().sum()) == 12_833
    same_name = tmp_path / "copy" / "KDDTest+.txt"  # would be test_KDDTest+/... twice: one was silently dropped
    same_name.parent.mkdir()
    same_name.write_text("".join(lines))
    with pytest.raises(DataError, match=r"KDDTest\+.txt: data.test_files names two files 'KDDTest\+'"):
        nsl_kdd.load(data_dir, variant="20percent", test_files=["KDDTest+", str(same_name)])
    # one file named as a string is a list of one (it was read a character at a time: "/: is a folder")
    assert set(nsl_kdd.load(data_dir, variant="20percent", test_files=str(extra)).tests) == {"KDDTest-21"}
    with pytest.raises(ConfigError, match=r"data.test_files=\[\]: name at least one test file"):
        nsl_kdd.load(data_dir, variant="20percent", test_files=[])  # was: KDDTest+ without a word


def test_nsl_unknown_attack_name_is_an_error(tmp_path):
    row = ["0", "tcp", "http", "SF"] + ["0"] * 37 + ["martian_attack", "21"]
    (tmp_path / "nsl_kdd").mkdir()
    (tmp_path / "nsl_kdd" / "KDDTrain+.txt").write_text(",".join(row) + "\n")
    with pytest.raises(DataError, match="martian_attack.*data row 1"):
        nsl_kdd.load(tmp_path)


def test_nsl_row_of_too_few_fields_is_named_not_taken_for_an_unknown_label(tmp_path):
    row = ["0", "tcp", "http", "SF"] + ["0"] * 37 + ["normal", "21"]
    (tmp_path / "nsl_kdd").mkdir()
    (tmp_path / "nsl_kdd" / "KDDTrain+.txt").write_text("\n".join([",".join(row), ",".join(row[:7]), ",".join(row)]))
    with pytest.raises(DataError, match="data row 2 has too few fields"):
        nsl_kdd.load(tmp_path)


def test_nsl_maps_all_test_only_attacks():
    test_only = "apache2 mailbomb processtable udpstorm mscan saint httptunnel named sendmail " \
        "snmpgetattack snmpguess worm xlock xsnoop ps sqlattack xterm".split()
    assert len(test_only) == 17 and all(name in nsl_kdd.CATEGORY for name in test_only)
    assert set(nsl_kdd.CATEGORY.values()) == {"normal", "DoS", "Probe", "R2L", "U2R"}


# --------------------------------------------------------------------------- UNSW-NB15


def test_unsw_single_file_stratified_split(data_dir):
    splits = unsw_nb15.load(data_dir, task="multiclass", test_fraction=0.3, seed=0)
    test, train = next(iter(splits.tests.values())), splits.train
    assert len(train) + len(test) == 82_332 and len(test) == 24_700
    assert "only UNSW_NB15_training-set" in splits.notes[0] and "TEST partition" in splits.notes[0]
    total = pd.concat([train.frame["label"], test.frame["label"]]).value_counts()
    assert total["Normal"] == 37_000 and total["Worms"] == 44 and total["Generic"] == 18_871
    share = test.frame["label"].value_counts() / total
    assert share.between(0.27, 0.33).all()  # stratified: every class near 30 %
    assert "id" not in train.frame.columns
    assert train.categorical_cols == ["proto", "service", "state"]
    binary = unsw_nb15.load(data_dir, task="binary")
    assert set(binary.train.frame["label"]) == {"benign", "attack"}


def test_unsw_two_files_bigger_is_train(tmp_path, data_dir):
    raw = read_table(data_dir / "unsw_nb15" / "UNSW_NB15_training-set.csv.gz")
    folder = tmp_path / "unsw_nb15"
    folder.mkdir()
    raw.iloc[::400].to_csv(folder / "UNSW_NB15_training-set.csv", index=False)  # 206 rows
    raw.iloc[1::100].to_csv(folder / "UNSW_NB15_testing-set.csv", index=False)  # 824 rows
    splits = unsw_nb15.load(tmp_path)
    assert len(splits.train) == 824 and list(splits.tests) == ["UNSW_NB15_training-set"]
    assert "swapped" in splits.notes[0]
    assert "train = UNSW_NB15_testing-set.csv (824 rows)" in splits.notes[0]


# --------------------------------------------------------------------------- CIC-IDS2017


def test_cic_per_class_time_split(data_dir):
    splits = cic_ids2017.load(data_dir, task="multiclass", test_fraction=0.3)
    train, test = splits.train, splits.tests["test"]
    assert len(train) + len(test) == 43_419 and splits.temporal
    assert train.time_col == "Timestamp" and train.group_col == "Src IP"
    for table in (train, test):
        assert np.all(np.diff(table.frame["Timestamp"].to_numpy()) >= 0)
    counts = pd.concat([train.frame["Label"], test.frame["Label"]]).value_counts()
    assert len(counts) == 16 and counts["BENIGN"] == 5_000 and counts["Heartbleed"] == 11
    for label, group in test.frame.groupby("Label"):
        newest_train = train.frame.loc[train.frame["Label"] == label, "Timestamp"].max()
        assert group["Timestamp"].min() >= newest_train, label
    leaked = {"id", "Flow ID", "Src IP", "Dst IP", "Src Port", "Timestamp", "Attempted Category"}
    assert not leaked & set(train.feature_cols) and "Dst Port" in train.numeric_cols
    assert train.categorical_cols == ["Protocol"] and any("per-class" in n for n in splits.notes)


def test_cic_original_layout(tmp_path):
    # Leading spaces, a repeated column, "Infinity", a trailing row of empty cells: as published.
    header = (
        " Destination Port, Flow Duration, Fwd Header Length, Flow Bytes/s, Fwd Header Length,"
        " Label"
    )
    rows = [
        f"{80 + i}, {i}, 20, {'Infinity' if i == 3 else i * 1.5}, 20, {('BENIGN', 'DDoS')[i % 2]}"
        for i in range(10)
    ] + [",,,,,"]
    (tmp_path / "Friday.csv").write_text("\n".join([header, *rows]) + "\n")
    splits = cic_ids2017.load(tmp_path, files=[str(tmp_path / "Friday.csv")], task="binary")
    frame = pd.concat([splits.train.frame, splits.tests["test"].frame])
    assert len(frame) == 10 and "Dst Port" in splits.train.numeric_cols
    assert np.isinf(frame["Flow Bytes/s"]).sum() == 1  # left for the preprocessing to fill
    notes = " ".join(splits.notes)
    assert "Fwd Header Length" in notes and "1 infinite" in notes and "1 row(s) without a label" in notes



def test_cic_missing_protocol_is_the_category_the_detector_reads_for_an_empty_field(tmp_path):
    from mstr.deploy.features import category

    header = "Dst Port,Protocol,Flow Duration,Label"
    missing = {3: "", 4: "NaN", 5: "-"}
    rows = [f"{80 + i},{missing.get(i, (6, 17)[i % 2])},{i},{('BENIGN', 'DDoS')[i % 2]}" for i in range(10)]
    (tmp_path / "day.csv").write_text("\n".join([header, *rows]) + "\n")
    splits = cic_ids2017.load(tmp_path, files=[str(tmp_path / "day.csv")], task="binary")
    frame = pd.concat([splits.train.frame, splits.tests["test"].frame])
    read = dict(zip(frame["Dst Port"] - 80, frame["Protocol"]))
    for row, token in missing.items():  # "NaN" was kept as a category that the detector reads as ""
        assert read[row] == category(token, True) == "", token
    assert set(frame["Protocol"]) == {"6", "17", ""}


# --------------------------------------------------------------------------- readers: bad input


def _gz(data: bytes) -> bytes:
    return gzip.compress(data)


_ROWS = b"x,y\n" + "".join(f"{i},{i * i}\n" for i in range(9999)).encode()

BAD_INPUTS = [
    # (case, file name, content, substrings the error must contain)
    ("empty", "a.csv", b"", ["empty"]),
    ("whitespace only", "a.csv", b"\n\n  \n", ["empty"]),
    ("header only", "a.csv", b"x,y,z\n", ["no data rows"]),
    ("header only gz", "a.csv.gz", _gz(b"x,y\r\n"), ["no data rows"]),
    ("truncated gzip", "a.csv.gz", _gz(_ROWS)[:5000], ["truncated or corrupt gzip"]),
    ("gzip bad crc", "a.csv.gz", _gz(b"x,y\n1,2\n")[:-8] + b"\0" * 8, ["corrupt gzip"]),
    ("duplicate columns", "a.csv", b"x,y,x\n1,2,3\n", ["duplicate", "'x'"]),
    ("semicolon delimiter", "a.csv", b"x;y;z\n1;2;3\n", ["'data.delimiter=\";\"'"]),  # typed as the shell needs
    ("tab in csv", "a.csv", b"x\ty\n1\t2\n", ["tab", "'data.delimiter=\"\\t\"'"]),
    ("comma in tsv", "a.tsv", b"x,y\n1,2\n", ["','", "'data.delimiter=\",\"'"]),
    ("NUL garbage", "a.csv", b"x,y\n1,2\n\x00\x01\x02garbage", ["NUL", "line 3"]),
    ("binary garbage", "a.csv", bytes(range(1, 256)) * 10, ["binary data"]),
    ("bzip2 data", "a.csv", bz2.compress(_ROWS), ["bzip2-compressed", "bunzip2 it first"]),
    # read as binary data or UTF-16 text ('re-export it as UTF-8 CSV'), where it only needs unpacking
    ("zip archive", "a.csv", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(40), ["a zip archive", "unzip it first"]),
    ("utf-16", "a.csv", "x,y\n1,2\n".encode("utf-16"), ["NUL"]),
    # packets, not flows: was 'NUL byte ... binary data'
    ("pcap", "capture.csv", b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(40),
     ["a packet capture, not a table of flows", "data.format=nfstream"]),
    ("pcapng", "capture.pcapng", b"\x0a\x0d\x0d\x0a" + bytes(40), ["a packet capture"]),
    ("very long line", "a.csv", b"x,y\n1," + b"9" * (2 << 20) + b"\n", ["line 2", "longer than"]),
    ("ragged row", "a.csv", b"x,y\n1,2\n3,4,5\n", ["line 3"]),
    ("zeek without fields", "conn.log", b"#separator \\x09\n#path\tconn\n1\t2\n", ["#fields"]),
    ("bad parquet", "a.parquet", b"PAR1 not really", ["parquet"]),
]


@pytest.mark.parametrize("case,name,content,expected", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_reader_rejects_bad_input(tmp_path, case, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_table(path)
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message, (case, message)


def test_reader_rejects_directory_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="folder") as err:
        read_table(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(DataError, match="no such file") as err:
        read_table(tmp_path / "nope.csv")
    assert str(tmp_path / "nope.csv") in str(err.value)


def test_reader_bom_crlf_gzip_roundtrip(tmp_path):
    expected = pd.DataFrame({"x": [1, 3], "name": ["a", "NA"]})
    body = "\ufeffx,name\r\n1,a\r\n3,NA\r\n".encode("utf-8")
    files = [("plain.csv", body), ("packed.csv.gz", _gz(body)), ("renamed.txt", _gz(body))]
    for name, data in files:
        (tmp_path / name).write_bytes(data)
        frame = read_table(tmp_path / name)
        pd.testing.assert_frame_equal(frame, expected, check_dtype=False)


def test_reader_drops_lines_that_repeat_the_header_and_names_rows_as_the_file_does(tmp_path):
    """Files joined with `cat` (CSE-CIC-IDS2018's day files repeat it too) hold the header again: training
    stopped at "column 'x' data row 3 holds 'x', not a number", while the detector skips such lines."""
    from mstr.data.readers import coerce_numeric

    (tmp_path / "joined.csv").write_text("x,name\n1,a\n2,b\nx, name\n3,c\n4,oops\n")
    frame = read_table(tmp_path / "joined.csv")
    assert frame["name"].tolist() == ["a", "b", "c", "oops"]
    assert "dropped 1 line(s) that repeat the header (data row 3 first)" in frame.attrs["notes"][0]
    frame.loc[4, "x"] = "four"  # data row 5: the line "4,oops"
    with pytest.raises(DataError, match=r"column 'x' data row 5 holds 'four'"):  # the file's own row number
        coerce_numeric(frame, ["x"], "joined.csv")


def test_reader_zeek_conn_log(tmp_path):
    log = (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
        "#fields\tts\tuid\tid.orig_h\tid.resp_p\tproto\tservice\tduration\torig_bytes"
        "\ttunnel_parents\n"
        "#types\ttime\tstring\taddr\tport\tenum\tstring\tinterval\tcount\tset[string]\n"
        "1500000000.1\tC1\t10.0.0.1\t80\ttcp\thttp\t0.5\t100\t(empty)\n"
        "1500000001.2\tC2\t10.0.0.2\t53\tudp\t-\t-\t-\t(empty)\n"
        "#close\t2017-07-14-00-00-00\n"
    )
    for name in ("conn.log", "conn.log.gz", "weird_name.dat"):
        data = _gz(log.encode()) if name.endswith(".gz") else log.encode()
        (tmp_path / name).write_bytes(data)
        frame = read_table(tmp_path / name)
        assert list(frame.columns)[:3] == ["ts", "uid", "id.orig_h"] and len(frame) == 2
        assert frame["duration"].dtype == np.float64 and np.isnan(frame["duration"][1])
        assert pd.isna(frame["service"][1]) and pd.isna(frame["tunnel_parents"][0])


def test_reader_parquet_and_tsv(tmp_path):
    frame = pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]})
    frame.to_parquet(tmp_path / "f.parquet")
    frame.to_csv(tmp_path / "f.tsv", sep="\t", index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / "f.parquet"), frame)
    pd.testing.assert_frame_equal(read_table(tmp_path / "f.tsv"), frame, check_dtype=False)


def test_resolve_paths(tmp_path):
    for name in ("b.csv", "a.csv.gz", "c.txt"):
        (tmp_path / name).write_text("x\n1\n")
    assert resolve_paths(tmp_path) == [tmp_path / "a.csv.gz", tmp_path / "b.csv"]
    assert resolve_paths(str(tmp_path / "*.txt")) == [tmp_path / "c.txt"]
    assert resolve_paths(tmp_path / "b.csv") == [tmp_path / "b.csv"]
    for target in (tmp_path / "*.parquet", tmp_path / "missing.csv"):
        with pytest.raises(DataError) as err:
            resolve_paths(target)
        assert str(target) in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no file matching"):
        resolve_paths(tmp_path / "empty")


# --------------------------------------------------------------------------- coerce_numeric


def test_coerce_numeric_names_row_and_column(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("x,y\n1,2\n3,4\n5,oops\n")
    frame = read_table(path)
    with pytest.raises(DataError) as err:
        coerce_numeric(frame, ["x", "y"], str(path))
    message = str(err.value)
    assert str(path) in message and "'y'" in message and "row 3" in message and "oops" in message


def test_coerce_numeric_counts_gaps_and_clips(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("x,y,z\n1,NaN,1e300\n2,inf,1\n,-Infinity,-1e300\n4,,2\n")
    frame, notes = coerce_numeric(read_table(path), ["x", "y", "z"], str(path))
    # gaps stay (the preprocessing fills them with training medians); only finite values are clipped
    np.testing.assert_array_equal(frame["x"], [1, 2, np.nan, 4])
    np.testing.assert_array_equal(frame["y"], [np.nan, np.inf, -np.inf, np.nan])
    assert frame["z"].tolist() == [1e12, 1, -1e12, 2]
    text = " ".join(notes)
    assert "3 missing and 2 infinite" in text and "clipped 2 value(s)" in text and str(path) in text
    assert all(frame[c].dtype == np.float64 for c in "xyz")


def test_coerce_numeric_missing_column():
    with pytest.raises(DataError, match="src.csv.*'nope'"):
        coerce_numeric(pd.DataFrame({"a": [1]}), ["nope"], "src.csv")


# --------------------------------------------------------------------------- property


_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
_ints = st.integers(min_value=-(2**53), max_value=2**53)


@st.composite
def numeric_frames(draw):
    n_cols = draw(st.integers(1, 5))
    n_rows = draw(st.integers(1, 8))
    data = {}
    for i in range(n_cols):
        kind = draw(st.sampled_from([_finite, _ints]))
        data[f"c{i}"] = draw(st.lists(kind, min_size=n_rows, max_size=n_rows))
    return pd.DataFrame(data)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=numeric_frames(), gz=st.booleans())
def test_numeric_csv_roundtrip(tmp_path, frame, gz):
    path = tmp_path / ("f.csv.gz" if gz else "f.csv")
    frame.to_csv(path, index=False)
    back, notes = coerce_numeric(read_table(path), list(frame.columns), str(path))
    assert notes == [] or any("clipped" in n for n in notes)
    expected = frame.astype(np.float64).clip(-1e12, 1e12)
    pd.testing.assert_frame_equal(back, expected, check_exact=True)


def test_a_missing_data_root_says_where_its_path_came_from(tmp_path, monkeypatch):
    """From MSTR_DATA_DIR (the default) the fix is the variable; from paths.data_dir=... the override."""
    from mstr.data.datasets import dataset_folder
    from mstr.errors import DataError

    monkeypatch.setenv("MSTR_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError, match=r"the data root \(paths.data_dir=.*env: the environment variable "
                                        r"MSTR_DATA_DIR, else ./data\) must hold nsl_kdd/: set MSTR_DATA_DIR to"):
        dataset_folder(tmp_path / "env", "nsl_kdd", "nsl_kdd")
    with pytest.raises(DataError, match=r"^.*given/nsl_kdd: no such folder; the data root \(paths.data_dir=.*given, as "
                                        r"given\) must hold nsl_kdd/: set paths.data_dir to the folder that holds it, "
                                        r"or download it there: python -m mstr.data.fetch nsl_kdd --root .*given$"):
        dataset_folder(tmp_path / "given", "nsl_kdd", "nsl_kdd")
    (tmp_path / "given" / "nsl_kdd").mkdir(parents=True)
    assert dataset_folder(tmp_path / "given", "nsl_kdd", "nsl_kdd") == tmp_path / "given" / "nsl_kdd"


def test_nsl_a_folder_or_an_empty_file_where_kddtrain_belongs_is_named_as_such(tmp_path):
    from mstr.data.datasets import nsl_kdd

    (tmp_path / "nsl_kdd" / "KDDTrain+.txt").mkdir(parents=True)  # was: "file not found"
    with pytest.raises(DataError, match=r"KDDTrain\+.txt: is a folder, not the NSL-KDD file"):
        nsl_kdd.load(tmp_path)
    (tmp_path / "nsl_kdd" / "KDDTrain+.txt").rmdir()
    (tmp_path / "nsl_kdd" / "KDDTrain+.txt").write_text("")  # was: "expected a header", which KDD files lack
    with pytest.raises(DataError, match=r"KDDTrain\+.txt: the file is empty; expected flow records in it$"):
        nsl_kdd.load(tmp_path)


@pytest.mark.slow  # reads and fits NSL-KDD (5 s)
def test_a_test_file_mostly_copied_from_training_is_warned_about(tmp_path, data_dir, compose_cfg, caplog):
    """KDDTrain+_20Percent given as a test file beside KDDTest+ scores 0.88 on rows the model trained
    on; only audit/dup_train_* said so. A test set more than half made of training rows is a warning."""
    import logging

    from hydra.utils import instantiate

    copied = tmp_path / "from_train.txt"
    copied.write_text("".join(gzip.open(data_dir / "nsl_kdd" / "KDDTrain+_20Percent.txt.gz", "rt").readlines()[:400]))
    dm = instantiate(compose_cfg(["data=nsl_kdd", "data.variant=20percent",
                                  f"data.test_files=[KDDTest+,{copied}]"]).data)
    with caplog.at_level(logging.WARNING, logger="mstr.data.datamodule"):
        dm.setup()
    warned = [r.getMessage() for r in caplog.records if "exact copies of training rows" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("test set from_train: ")  # not KDDTest+ (few copies)
    assert dm.audit["dup_train_from_train_share"] > 0.5 > dm.audit["dup_train_KDDTest+_share"]


def test_the_synthetic_generators_command_line_names_its_own_option(capsys):
    """`--flows 10` was refused as data.source.n_flows=10, a key of the training config, not of this command."""
    from mstr.data.datasets.synthetic import main

    with pytest.raises(SystemExit) as stop:
        main(["--flows", "10", "--out", "never.csv"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --flows: must be an integer >= 500, got '10'" in err
    assert "data.source" not in err
