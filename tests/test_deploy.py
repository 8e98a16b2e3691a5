"""Export and streaming detection end to end on real slices: NSL-KDD lines (file and stdin), a Zeek
conn.log with per-host windows, a pcap through NFStream; the feature encoder and window context of
`mstr.deploy` against the training pipeline; refused artifacts; deploy's import graph."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
TRAIN_FAST = ["distill=none", "trainer.max_epochs=1", "trainer.limit_train_batches=6", "trainer.limit_val_batches=2",
              "trainer.enable_progress_bar=false", "logger=csv", "plots=false"]


def _compose(config_name: str, overrides: list[str]):
    from mstr.config import compose_config

    return compose_config(config_name, overrides)


def train_run(run_dir: Path, overrides: list[str]) -> Path:
    """Train in-process into `run_dir` and leave the composed config where Hydra's CLI leaves it, so
    export and detect find the run's data config as they do for `python -m mstr.train` runs."""
    from mstr.train import run

    cfg = _compose("train", [f"paths.output_dir={run_dir}", f"paths.teacher_cache_dir={run_dir / 'teachers'}",
                             *TRAIN_FAST, *overrides])
    metrics = run(cfg)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return Path(metrics["best_checkpoint"])


def export(ckpt: Path, out: Path, fmt: str = "onnx", *overrides: str) -> dict:
    from mstr.export import run

    return run(_compose("export", [f"ckpt_path={ckpt}", f"format={fmt}", f"out={out}",
                                   f"paths.output_dir={out.parent}", *overrides]))


def detect(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mstr.detect", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, timeout=300)


@contextmanager
def following(model: Path, log: Path) -> Iterator[subprocess.Popen]:
    """`mstr.detect --follow --all` on `log`, killed after 3 minutes: a hang fails the test instead of
    blocking the suite."""
    proc = subprocess.Popen([sys.executable, "-m", "mstr.detect", "--model", str(model), "--input", str(log),
                             "--follow", "--all"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(180, proc.kill)
    watchdog.start()
    try:
        yield proc
    finally:
        watchdog.cancel()


def verdicts(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def training_scores(ckpt: Path, table, window: int) -> np.ndarray:
    """P(attack) of each row of `table`, as training and mstr.evaluate compute it."""
    from torch.utils.data import DataLoader

    from mstr.data.preprocessing import FlowPreprocessor
    from mstr.data.windows import FlowWindowDataset, collate_prebatched
    from mstr.training.checkpoint import load_classifier
    from mstr.training.evaluation import predict

    model = load_classifier(ckpt)
    windows = FlowWindowDataset.from_table(table, FlowPreprocessor.from_dict(model.hparams["preprocessor"]), window)
    probs, _ = predict(model, DataLoader(windows, batch_size=1024, collate_fn=collate_prebatched))
    return probs[:, 1].numpy()


# ---- NSL-KDD: KDD lines ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nsl(tmp_path_factory, data_dir):
    """A small NSL-KDD student, its ONNX artifact, and the first 1,500 lines of KDDTest+."""
    root = tmp_path_factory.mktemp("nsl")
    ckpt = train_run(root / "run", ["data=nsl_kdd", "data.variant=20percent"])
    artifact = root / "artifact"
    report = export(ckpt, artifact)
    with gzip.open(data_dir / "nsl_kdd" / "KDDTest+.txt.gz", "rt") as fh:
        head = [next(fh) for _ in range(1500)]
    lines = root / "kdd_slice.txt"
    lines.write_text("".join(head))
    return {"ckpt": ckpt, "artifact": artifact, "report": report, "lines": lines, "root": root}


def test_export_writes_a_verified_onnx_artifact(nsl):
    import onnx

    from mstr.deploy.artifact import load_artifact, sha256

    folder = nsl["artifact"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["runtime"] == "onnx"
    for name, entry in manifest["files"].items():
        assert sha256(folder / name) == entry["sha256"]
    model = onnx.load(str(folder / "model.onnx"))
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # a dynamic batch axis
    spec = load_artifact(folder).spec
    assert spec["input"]["format"] == "nsl_kdd" and spec["window"] == 1 and spec["classes"] == ["benign", "attack"]
    assert spec["preprocessor"]["feature_names"][:2] == ["duration", "src_bytes"]
    assert 0 <= nsl["report"]["parity/max_abs_diff_probs"] <= 1e-4
    assert nsl["report"]["parity/max_abs_diff_features"] == 0.0 and nsl["report"]["parity/windows"] == 2048


def test_detect_scores_kdd_lines_like_training(nsl, data_dir):
    from mstr.data.datasets.nsl_kdd import _load_file

    table = _load_file(nsl["lines"], "binary", [])
    expected = training_scores(nsl["ckpt"], table, window=1)
    for model in (nsl["artifact"], nsl["ckpt"]):  # ONNX Runtime, and PyTorch on the checkpoint
        result = detect("--model", str(model), "--input", str(nsl["lines"]), "--all")
        assert result.returncode == 0, result.stderr
        out = verdicts(result.stdout)
        assert [v["flow"] for v in out] == list(range(1, 1501))
        scores = np.array([v["score"] for v in out])
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        assert [v["alert"] for v in out] == [bool(s > 0.5) for s in scores]
        assert "flows seen 1,500, scored 1,500, dropped 0, bad 0" in result.stderr


@pytest.mark.slow
def test_unsw_nb15_model_exports_and_scores_its_csv_lines_like_training(tmp_path, data_dir):
    """UNSW-NB15's service "-" is a category of its own to its loader. The deployed encoder once read it
    as a missing token, so every UNSW-NB15 export failed its feature parity check; now it is kept, and
    a model with bins, frequent-value indicators, a row branch and columns ordered by dependence (all of
    experiment=unsw_nb15's student) scores the file's own lines."""
    from mstr.data.datasets.unsw_nb15 import _read, _table
    from mstr.training.checkpoint import load_classifier

    ckpt = train_run(tmp_path / "run", ["data=unsw_nb15", "data.numeric_bins=16", "data.frequent_values=16",
                                        "model.backbone.row_branch=true", "data.column_order=dependence"])
    classifier = load_classifier(ckpt)
    model = classifier.model
    assert sum(p.numel() for p in model.parameters()) <= 5_000  # experiment=unsw_nb15's student, in budget
    artifact = tmp_path / "artifact"
    report = export(ckpt, artifact)
    assert report["parity/max_abs_diff_features"] == 0.0 and report["parity/max_abs_diff_probs"] <= 1e-4
    with gzip.open(data_dir / "unsw_nb15" / "UNSW_NB15_training-set.csv.gz", "rt") as fh:
        head = [next(fh) for _ in range(801)]  # the header and 800 flows
    order = classifier.hparams["preprocessor"]["column_order"]
    file_order = [c for c in head[0].strip().split(",") if c in order]
    assert sorted(order) == sorted(file_order) and order != file_order  # the export keeps the dependence order
    lines = tmp_path / "unsw_slice.csv"
    lines.write_text("".join(head))
    table = _table(_read(lines), "binary", str(lines), [])
    assert (table.frame["service"] == "-").any()
    result = detect("--model", str(artifact), "--input", str(lines), "--all")
    assert result.returncode == 0, result.stderr
    scores = np.array([v["score"] for v in verdicts(result.stdout)])
    np.testing.assert_allclose(scores, training_scores(ckpt, table, window=1), atol=1e-5)
    assert "flows seen 800, scored 800, dropped 0, bad 0" in result.stderr


def test_detect_reads_stdin_and_skips_bad_lines(nsl):
    good = nsl["lines"].read_text().splitlines()[:300]
    broken = good[10].split(",")
    broken[4] = "lots"  # src_bytes
    feed = "\n".join([*good[:100], "not,a,kdd,line", ",".join(broken), *good[100:]]) + "\n"
    result = detect("--model", str(nsl["artifact"]), "--input", "-", "--all", stdin=feed)
    assert result.returncode == 0, result.stderr
    assert len(verdicts(result.stdout)) == 300
    assert "flows seen 302, scored 300, dropped 0, bad 2" in result.stderr
    assert "line 101: 4 fields" in result.stderr and "'src_bytes' holds 'lots'" in result.stderr
    followed = detect("--model", str(nsl["artifact"]), "--input", "-", "--follow", stdin=feed)  # a closed pipe ends it
    assert followed.returncode == 0 and "flows seen 302, scored 300" in followed.stderr


def test_a_byte_order_mark_is_dropped_as_training_drops_it(nsl, tmp_path):
    """A file saved with a UTF-8 byte-order mark (Windows editors, Excel's CSV): training's reader drops
    it; the detector read it into the first field, so the first KDD line was a bad line (and a CSV
    header's first name another name)."""
    text = "\ufeff" + "".join(nsl["lines"].read_text().splitlines(keepends=True)[:50])
    (tmp_path / "bom.txt").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "bom.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write(text)
    for result in (detect("--model", str(nsl["artifact"]), "--input", str(tmp_path / "bom.txt")),
                   detect("--model", str(nsl["artifact"]), "--input", str(tmp_path / "bom.txt.gz")),
                   detect("--model", str(nsl["artifact"]), "--input", "-", stdin=text)):
        assert result.returncode == 0 and "flows seen 50, scored 50, dropped 0, bad 0" in result.stderr, result.stderr


def test_a_pipe_loses_no_flow_unless_told_to_drop_and_then_says_so(nsl):
    """A full queue makes stdin wait by default (a one-flow queue: every flow scored; dropping was the
    default for stdin, and `cat file | detect` lost about half); `--on-full drop` drops, counts and warns."""
    feed = nsl["lines"].read_text()  # 1,500 KDDTest+ lines
    waited = detect("--model", str(nsl["artifact"]), "--input", "-", "--all", "--queue", "1", stdin=feed)
    assert waited.returncode == 0 and "flows seen 1,500, scored 1,500, dropped 0, bad 0" in waited.stderr
    assert "queue full" not in waited.stderr and len(verdicts(waited.stdout)) == 1500
    dropped = detect("--model", str(nsl["artifact"]), "--input", "-", "--queue", "1", "--on-full", "drop", stdin=feed)
    seen = re.search(r"flows seen 1,500, scored ([\d,]+), dropped ([\d,]+), bad 0", dropped.stderr)
    assert dropped.returncode == 0 and seen, dropped.stderr
    scored, lost = (int(v.replace(",", "")) for v in seen.groups())
    assert lost > 0 and scored + lost == 1500 and "queue full: " in dropped.stderr


def test_detect_refuses_to_write_over_what_it_reads_or_writes(nsl, tmp_path):
    log = tmp_path / "flows.txt"
    shutil.copy(nsl["lines"], log)
    before = log.read_bytes()
    for args, named in ((["--input", str(log), "--output", str(log)], "--output"),
                        (["--input", str(log), "--output", str(tmp_path / "a.jsonl"), "--summary",
                          str(tmp_path / "a.jsonl")], "--summary"),
                        (["--input", str(log), "--summary", str(tmp_path / "." / "flows.txt")], "--summary")):
        result = detect("--model", str(nsl["artifact"]), *args)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and last.startswith(f"error: {named} ") and "writing it would wipe" in last, last
    assert log.read_bytes() == before and not (tmp_path / "a.jsonl").exists()


def test_detect_refuses_to_write_into_the_model_it_runs(nsl, tmp_path):
    """`--output detector/model.onnx` overwrote the model (the next load refused its checksum); a new file
    in the artifact folder changes what the folder is. A checkpoint is refused as an output too."""
    art = tmp_path / "detector"
    shutil.copytree(nsl["artifact"], art)
    before = {p.name: p.read_bytes() for p in art.iterdir()}
    ckpt = tmp_path / "best.ckpt"
    shutil.copy(nsl["ckpt"], ckpt)
    for model, args, named in ((art, ["--output", str(art / "model.onnx")], "--output"),
                               (art, ["--summary", str(art / "summary.json")], "--summary"),
                               (ckpt, ["--output", str(ckpt)], "--output")):
        result = detect("--model", str(model), "--input", str(nsl["lines"]), *args)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and last.startswith(f"error: {named} ") and "writing it would damage" in last, last
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before
    assert ckpt.read_bytes() == Path(nsl["ckpt"]).read_bytes()


def test_torchscript_artifact_scores_like_onnx(nsl):
    from mstr.deploy.artifact import load_artifact
    from mstr.deploy.runtime import artifact_scorer
    from mstr.training.export import checkpoint_detector, parity_windows

    folder = nsl["root"] / "ts"
    report = export(nsl["ckpt"], folder, "torchscript")
    assert report["parity/max_abs_diff_probs"] <= 1e-5
    _, _, dm = checkpoint_detector(nsl["ckpt"])
    windows, _ = parity_windows(dm, 512)
    ts = artifact_scorer(load_artifact(folder))(windows)
    ort = artifact_scorer(load_artifact(nsl["artifact"]))(windows)
    np.testing.assert_allclose(ts, ort, atol=1e-5)


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove", "spec"])
def test_damaged_artifact_is_refused(nsl, tmp_path, damage):
    folder = tmp_path / "art"
    shutil.copytree(nsl["artifact"], folder)
    model = folder / "model.onnx"
    if damage == "flip":
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    elif damage == "truncate":
        model.write_bytes(model.read_bytes()[:1000])
    elif damage == "remove":
        model.unlink()
    else:  # a changed threshold in the spec is tampering too
        spec = folder / "detector.json"
        spec.write_text(spec.read_text().replace('"threshold": 0.5', '"threshold": 0.9'))
    result = detect("--model", str(folder), "--input", str(nsl["lines"]))
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and {"flip": "sha256 differs", "truncate": "bytes where the manifest",
                                              "remove": "missing from the artifact", "spec": "sha256 differs"}[damage] in message


def test_an_artifact_replaces_an_older_one_but_never_other_files(nsl, tmp_path):
    """Written again over an artifact (a re-export), the folder holds the new one alone; a folder that
    also holds a file of the user's, or is not an artifact at all, is refused and left as it was."""
    import json

    from mstr.deploy.artifact import load_artifact, write_artifact
    from mstr.errors import DataError

    older = load_artifact(nsl["artifact"])
    folder = tmp_path / "art"

    def write(spec):
        model = tmp_path / "model.onnx"
        shutil.copy(older.model_path, model)
        return write_artifact(folder, "onnx", model, spec)

    write(older.spec)
    write({**older.spec, "threshold": 0.7})
    assert load_artifact(folder).spec["threshold"] == 0.7
    assert sorted(p.name for p in folder.iterdir()) == ["detector.json", "manifest.json", "model.onnx"]
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"holds files that are not an mstr artifact's \(notes.txt\)"):
        write(older.spec)
    (folder / "notes.txt").unlink()
    (folder / "manifest.json").unlink()  # the artifact's own names, but no artifact: not ours to delete
    with pytest.raises(DataError, match="no manifest.json"):
        write(older.spec)
    assert json.loads((folder / "detector.json").read_text())["threshold"] == 0.7


def _respecced(artifact: Path, folder: Path, edit) -> Path:
    """A copy of `artifact` whose detector.json was edited by `edit(spec)` and its manifest re-hashed, as a
    user editing the spec by hand would: the hashes match, the values must still be checked."""
    from mstr.deploy.artifact import sha256

    shutil.copytree(artifact, folder)
    spec = json.loads((folder / "detector.json").read_text())
    edit(spec)
    (folder / "detector.json").write_text(json.dumps(spec))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["detector.json"] = {"sha256": sha256(folder / "detector.json"),
                                          "bytes": (folder / "detector.json").stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("edit, named", [
    (lambda s: s.update(window=0), "window = 0"), (lambda s: s.update(threshold="high"), "threshold = 'high'"),
    (lambda s: s.update(threshold=7), "threshold = 7"), (lambda s: s.pop("input"), "key(s) ['input'] missing"),
    (lambda s: s.update(classes=[]), "classes = []"), (lambda s: s.update(num_features=5), "num_features = 5"),
    (lambda s: s.update(window=3), "does not score a window of window=3 x"),  # valid alone, but not the model's input
], ids=["window0", "threshold-text", "threshold7", "no-input", "no-classes", "num-features", "window-vs-model"])
def test_hand_edited_spec_with_matching_hashes_is_refused(nsl, tmp_path, edit, named):
    folder = _respecced(nsl["artifact"], tmp_path / "art", edit)
    result = detect("--model", str(folder), "--input", str(nsl["lines"]))
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: {folder / 'detector.json'}: ") and named in message
    assert "export the artifact again" in message


def test_the_preprocessings_numbers_in_a_hand_edited_spec_are_checked(nsl, small_synthetic_dm):
    """Scales, clip, fill values and bin edges that no fit makes (zero or NaN scales, a negative clip,
    falling edges) are refused by name; they scored silently wrong before (or warned of a division by
    zero). In-process: the refusal itself goes through detect in the test above."""
    from mstr.data.preprocessing import FlowPreprocessor
    from mstr.deploy.artifact import check_spec
    from mstr.errors import DataError

    prep = json.loads(json.dumps(FlowPreprocessor.fit(small_synthetic_dm.tables["train"], numeric_bins=6).to_dict()))
    spec = {**json.loads((nsl["artifact"] / "detector.json").read_text()), "preprocessor": prep,
            "num_features": len(prep["feature_names"])}
    assert prep["bin_edges"] and prep["fill"]  # bins and medians to spoil
    column = next(iter(prep["bin_edges"]))
    edits = {"preprocessor.scale holds a scale <= 0": ("scale", [0.0] * len(prep["scale"])),
             "preprocessor.center holds a value that is not a finite number": ("center", [float("nan")] * len(prep["center"])),
             "preprocessor.clip is <= 0": ("clip", -1.0),
             "preprocessor.fill holds a value that is not a finite number": ("fill", [float("inf")] * len(prep["fill"])),
             "preprocessor.bin_edges holds edges that do not rise": ("bin_edges", {**prep["bin_edges"],
                                                                              column: prep["bin_edges"][column][::-1]})}
    # column lists that disagree with the feature names: a column's value read into another's place
    edits.update({
        "preprocessor.numeric_cols do not match the first feature_names, in order": (
            "numeric_cols", prep["numeric_cols"][::-1]),
        "preprocessor.log_cols name column(s) ['nonexistent'] that are not numeric_cols": ("log_cols", ["nonexistent"]),
        "preprocessor.column_order is not an order of the numeric and categorical columns": (
            "column_order", prep["column_order"][:-1] or ["nonexistent"]),
        "preprocessor.scaler = 'foo': must be one of ['standard', 'minmax']": ("scaler", "foo")})
    check_spec(Path("detector.json"), spec)  # as exported: passes
    for named, (key, value) in edits.items():
        with pytest.raises(DataError, match=re.escape(f"detector.json: {named}; export the artifact again")):
            check_spec(Path("detector.json"), {**spec, "preprocessor": {**prep, key: value}})


@pytest.mark.parametrize("option", ["--output", "--summary"])
@pytest.mark.parametrize("where", ["no-folder", "a-folder", "no-files-there"])
def test_unwritable_output_paths_are_refused_before_reading_input(nsl, tmp_path, option, where):
    # /proc takes no new files, though os.access lets root (and CI containers run as root) write there
    path = {"no-folder": tmp_path / "missing" / "out.json", "a-folder": tmp_path,
            "no-files-there": Path("/proc/mstr-out.json")}[where]
    result = detect("--model", str(nsl["artifact"]), "--input", "-", option, str(path),
                    stdin=nsl["lines"].read_text())
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "summary:" not in result.stderr  # refused before any flow was read
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {option} {path}: ")


def test_summary_dash_is_refused_not_a_file_named_dash(nsl, tmp_path):
    """`--output -` is stdout; `--summary -` wrote a file named "-" in the current folder."""
    result = subprocess.run([sys.executable, "-m", "mstr.detect", "--model", str(nsl["artifact"]), "--input",
                             str(nsl["lines"]), "--summary", "-"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and result.stdout == "" and not (tmp_path / "-").exists()
    assert result.stderr.strip().splitlines()[-1].startswith("error: --summary -: the summary goes to stderr")


def test_an_output_that_fails_mid_stream_ends_with_one_line(nsl):
    """A write that fails after the start's checks (here /dev/full: the disk filled up) ends the run with
    one line naming the option, exit 2, not a traceback."""
    for args in (["--output", "/dev/full"], ["--output", "/dev/full", "--all"]):
        result = detect("--model", str(nsl["artifact"]), "--input", str(nsl["lines"]), *args)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert last == "error: --output /dev/full: cannot be written (No space left on device)", last


def test_input_of_another_format_ends_with_one_line_and_exit_2(nsl, data_dir, tmp_path):
    """UNSW-NB15's CSV fed to an NSL-KDD model: every line is a bad line, counted; then one line saying so
    (its count written as the summary writes counts), exit 2."""
    with gzip.open(data_dir / "unsw_nb15" / "UNSW_NB15_training-set.csv.gz", "rt") as fh:
        (tmp_path / "unsw.csv").write_text("".join(next(fh) for _ in range(1201)))
    result = detect("--model", str(nsl["artifact"]), "--input", str(tmp_path / "unsw.csv"))
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "flows seen 1,201, scored 0, dropped 0, bad 1,201" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("error: none of the 1,201 flow(s) could be read as nsl_kdd input; "
                                                      "check --input against the format the model was trained on")


def test_lines_with_too_many_fields_are_bad_lines(nsl):
    good = nsl["lines"].read_text().splitlines()[:4]
    feed = [*good[:2], ",".join(map(str, range(1, 51))), good[2] + ",1,2,3", good[3]]  # 50 and 46 fields
    result = detect("--model", str(nsl["artifact"]), "--input", "-", "--all", stdin="\n".join(feed) + "\n")
    assert result.returncode == 0, result.stderr
    assert [v["flow"] for v in verdicts(result.stdout)] == [1, 2, 5]
    assert "flows seen 5, scored 3, dropped 0, bad 2" in result.stderr
    assert "line 3: 50 fields, expected 41 to 43" in result.stderr and "line 4: 46 fields" in result.stderr


def test_carriage_returns_and_binary_junk_are_bad_lines_from_stdin_and_files(nsl, tmp_path):
    """A bare \\r or binary (a gzip piped in as text) is one bad line, read from stdin or from a file alike,
    and a file's lines are counted by "\\n" only, so verdicts keep the flow numbers of stdin."""
    good = [line.encode() for line in nsl["lines"].read_text().splitlines()[:4]]
    junk = gzip.compress(b"0,tcp,http,SF", mtime=0)[:12].replace(b"\n", b"")
    data = b"\n".join([good[0], good[1], b"0,tcp\rhttp,SF", junk + b"\r\x00\xff", good[2], good[3] + b"\r"]) + b"\n"
    (tmp_path / "mixed.txt").write_bytes(data)
    args = [sys.executable, "-m", "mstr.detect", "--model", str(nsl["artifact"]), "--all", "--input"]
    for source, feed in (("-", data), (str(tmp_path / "mixed.txt"), None)):
        result = subprocess.run([*args, source], input=feed, capture_output=True, cwd=REPO, timeout=300,
                                env={**os.environ, "LC_ALL": "C.UTF-8"})  # a strict UTF-8 stdin
        stderr = result.stderr.decode()
        assert result.returncode == 0, stderr
        assert [v["flow"] for v in verdicts(result.stdout.decode())] == [1, 2, 5, 6], source
        assert "flows seen 6, scored 4, dropped 0, bad 2" in stderr and "line 3: a carriage return" in stderr


def test_export_refuses_bad_requests(nsl, tmp_path):
    from mstr.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match="format='tflite'"):
        export(nsl["ckpt"], tmp_path / "a", "tflite")
    bare = tmp_path / "bare.ckpt"  # no run config beside it, and the default data config does not fit
    shutil.copy(nsl["ckpt"], bare)
    with pytest.raises(DataError, match="missing column.*the model was trained on"):
        export(bare, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("bad, named", [("threshold=abc", "threshold='abc'"), ("threshold=1", "threshold=1"),
                                        ("parity_windows=0", "parity_windows=0"),
                                        ("parity_tolerance=-1", "parity_tolerance=-1"), ("threads=0", "threads=0"),
                                        ("out=FILE", "is a file"),
                                        ("out=NOTES", "holds files that are not an mstr artifact's (notes.txt)")])
def test_export_values_are_checked_before_the_checkpoint_is_read_or_a_run_dir_made(tmp_path, bad, named):
    """`out=` a folder of other files (a run dir, the current folder) is refused, never emptied."""
    from _cli import run_cli

    ckpt = tmp_path / "any.ckpt"  # never opened: the values fail first
    ckpt.write_text("not a checkpoint")
    (tmp_path / "file").write_text("")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    bad = bad.replace("FILE", str(tmp_path / "file")).replace("NOTES", str(tmp_path / "notes"))
    proc = run_cli("mstr.export", [f"ckpt_path={ckpt}", bad], tmp_path / "cwd")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and named in lines[0], proc.stderr
    assert not (tmp_path / "cwd" / "logs").exists() and (tmp_path / "notes" / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_export_uses_the_checkpoints_preprocessing_when_its_config_is_gone(tmp_path):
    """A run made in-process (a benchmark's) keeps its config beside its checkpoints, which export reads;
    with that config gone, exporting with a data config that lacks its numeric bins and frequent values
    still builds the checkpoint's columns, from its fitted preprocessing; the deploy encoder reproduces
    both on real rows."""
    from mstr.errors import DataError
    from mstr.train import run

    cfg = _compose("train", [f"paths.output_dir={tmp_path / 'run'}", *TRAIN_FAST, "data=nsl_kdd",
                             "data.variant=20percent", "data.numeric_bins=4", "data.frequent_values=4"])
    ckpt = Path(run(cfg)["best_checkpoint"])
    assert export(ckpt, tmp_path / "from_config", "onnx")["parity/max_abs_diff_features"] == 0  # no data=...
    shutil.rmtree(tmp_path / "run" / ".hydra")
    with pytest.raises(DataError, match="no run config beside .*give the data config the model was trained with"):
        export(ckpt, tmp_path / "wrong", "onnx")  # the export's default data (synthetic) lacks NSL-KDD's columns
    assert not (tmp_path / "wrong").exists()
    report = export(ckpt, tmp_path / "artifact", "onnx", "data=nsl_kdd", "data.variant=20percent")
    assert report["parity/max_abs_diff_probs"] < 1e-4 and report["parity/max_abs_diff_features"] == 0
    from mstr.training.checkpoint import load_classifier

    spec = json.loads((tmp_path / "artifact" / "detector.json").read_text())
    assert spec["preprocessor"]["bin_edges"] and spec["num_features"] == load_classifier(ckpt).hparams["num_features"]
    assert spec["preprocessor"]["frequent_values"]  # NSL-KDD repeats exact counts (dst_host_count 255, ...)


# ---- Zeek conn.log: per-host windows -----------------------------------------------------------------
ZEEK_FIELDS = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
               "orig_bytes", "resp_bytes", "conn_state", "orig_pkts", "resp_pkts", "label"]


def write_conn_log(frame, path: Path) -> None:
    """Synthetic flows as a labelled Zeek conn.log (the layout of Stratosphere's CTU / IoT-23 logs)."""
    rows = ["#separator \\x09", "#path\tconn", "#fields\t" + "\t".join(ZEEK_FIELDS),
            "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tcount\tcount\tstring"]
    for i, r in enumerate(frame.itertuples(index=False)):
        rows.append("\t".join(str(v) for v in [f"{r.ts:.6f}", f"C{i:07d}", r.src_host, 40000 + i % 20000, "10.9.0.1",
                                                r.dst_port, r.proto, r.service, f"{r.duration:.6f}", int(r.fwd_bytes),
                                                int(r.bwd_bytes), r.conn_state, int(r.fwd_pkts), int(r.bwd_pkts),
                                                r.label]))
    path.write_text("\n".join(rows) + "\n#close\t2026-01-01-00-00-00\n")


@pytest.fixture(scope="module")
def zeek(tmp_path_factory):
    from mstr.data.datasets.synthetic import generate_flows

    root = tmp_path_factory.mktemp("zeek")
    frame = generate_flows(4000, seed=3)
    cut = int(len(frame) * 0.7)
    write_conn_log(frame.iloc[:cut], root / "train.log")
    write_conn_log(frame.iloc[cut:], root / "test.log")
    ckpt = train_run(root / "run", ["data=flows", f"data.path={root / 'train.log'}",
                                    f"data.test_path={root / 'test.log'}", "data.window=4"])
    export(ckpt, root / "artifact")
    return {"ckpt": ckpt, "artifact": root / "artifact", "root": root}


@pytest.mark.slow
def test_a_model_of_tsv_flows_with_gaps_exports_and_detect_reads_tsv_like_training(tmp_path):
    """Flows in TSV files (found by the name, no data.format) with missing numbers, as real logs have,
    and categories spelt "NULL" / "n/a": the export passes its parity check (gaps get the training
    medians on both sides, those categories stay categories on both), the artifact reads TSV lines, and
    its scores are training's; a parquet file is refused with one line."""
    from mstr.data.datasets.flows import load
    from mstr.data.datasets.synthetic import generate_flows

    frame = generate_flows(4000, seed=5)
    frame.loc[frame.index % 17 == 0, "duration"] = np.nan
    frame.loc[frame.index % 23 == 0, "fwd_bytes"] = np.nan
    frame.loc[frame.index % 13 == 0, "service"] = "NULL"  # a category text that reads as a gap in a number
    frame.loc[frame.index % 19 == 0, "conn_state"] = "n/a"  # column: both sides keep it a category value
    frame.loc[frame.index % 29 == 0, "bwd_bytes"] = np.inf  # filled with the median on both sides (export's
    frame.loc[frame.index % 31 == 0, "bwd_bytes"] = -np.inf  # check clipped them: every such export refused)
    cut = int(len(frame) * 0.7)
    frame.iloc[:cut].to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    frame.iloc[cut:].to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    data = ["data=flows", f"data.path={tmp_path / 'train.tsv'}", f"data.test_path={tmp_path / 'test.tsv'}",
            "data.time_col=ts", "data.group_col=src_host"]
    ckpt = train_run(tmp_path / "run", data)
    report = export(ckpt, tmp_path / "artifact")
    assert report["parity/max_abs_diff_features"] <= 1e-6
    from mstr.deploy.artifact import load_artifact

    assert load_artifact(tmp_path / "artifact").spec["input"]["format"] == "tsv"
    test = load(path=str(tmp_path / "train.tsv"), test_path=str(tmp_path / "test.tsv"), time_col="ts",
                group_col="src_host").tests["test"]
    result = detect("--model", str(tmp_path / "artifact"), "--input", str(tmp_path / "test.tsv"), "--all")
    assert result.returncode == 0, result.stderr
    scores = [v["score"] for v in verdicts(result.stdout)]
    np.testing.assert_allclose(scores, training_scores(ckpt, test, window=8), atol=1e-5)
    frame.iloc[cut:].drop(columns=["src_host"]).to_csv(tmp_path / "hostless.tsv", sep="\t", index=False)
    hostless = detect("--model", str(tmp_path / "artifact"), "--input", str(tmp_path / "hostless.tsv"), "--all")
    assert hostless.returncode == 0 and "no 'src_host' column, so the flows form one window stream" in hostless.stderr
    frame.iloc[cut:].to_parquet(tmp_path / "test.parquet")
    refused = detect("--model", str(tmp_path / "artifact"), "--input", str(tmp_path / "test.parquet"))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'test.parquet'}: a parquet file; mstr.detect reads flow lines (tsv here)")


@pytest.mark.slow
def test_a_run_of_relative_flow_files_exports_from_another_folder(tmp_path, monkeypatch):
    """data.path=flows.csv, trained in one folder: exporting it from another looked for flows.csv there
    ('no such file or folder'), while mstr.evaluate read it where the run was started."""
    from mstr.data.datasets.synthetic import generate_flows

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    generate_flows(2000, seed=3).to_csv(project / "flows.csv", index=False)
    monkeypatch.chdir(project)
    ckpt = train_run(tmp_path / "run", ["data=flows", "data.path=flows.csv", "data.time_col=ts",
                                        "data.group_col=src_host", "data.window=2"])
    OmegaConf.save({"hydra": {"runtime": {"cwd": str(project)}}}, tmp_path / "run" / ".hydra" / "hydra.yaml")
    monkeypatch.chdir(elsewhere)
    assert export(ckpt, tmp_path / "artifact")["parity/windows"] > 0


@pytest.mark.slow
def test_a_model_of_the_default_data_scores_the_synthetic_traffic_the_cli_writes(tmp_path):
    """The quick start's deploy path: train on the default (synthetic) data, export, write new traffic
    with `python -m mstr.data.datasets.synthetic`, and detect it: every flow scored as training scores it."""
    from _cli import run_cli
    from mstr.data.datasets.synthetic import load
    from mstr.data.table import concat_tables

    ckpt = train_run(tmp_path / "run", [])
    export(ckpt, tmp_path / "artifact")
    wrote = run_cli("mstr.data.datasets.synthetic", ["--flows", "3000", "--seed", "9", "--out",
                                                     str(tmp_path / "traffic.csv")], tmp_path)
    assert wrote.returncode == 0 and " flows (" in wrote.stderr, wrote.stderr
    result = detect("--model", str(tmp_path / "artifact"), "--input", str(tmp_path / "traffic.csv"), "--all")
    assert result.returncode == 0, result.stderr
    table = load(n_flows=3000, seed=9, test_fraction=0.5)
    every = concat_tables([table.train, table.tests["synthetic"]], "all")
    np.testing.assert_allclose([v["score"] for v in verdicts(result.stdout)],
                               training_scores(ckpt, every, window=8), atol=1e-5)


@pytest.mark.slow  # a detect process over a Zeek log, 6 s
def test_detect_zeek_log_with_host_windows_like_training(zeek):
    from mstr.data.datasets.flows import load

    test = load(path=str(zeek["root"] / "train.log"), test_path=str(zeek["root"] / "test.log")).tests["test"]
    expected = training_scores(zeek["ckpt"], test, window=4)
    result = detect("--model", str(zeek["artifact"]), "--input", str(zeek["root"] / "test.log"), "--all")
    assert result.returncode == 0, result.stderr
    out = verdicts(result.stdout)
    assert len(out) == len(test)
    np.testing.assert_allclose([v["score"] for v in out], expected, atol=1e-5)
    first = out[0]
    assert first["id"]["uid"] == "C0000000" and set(first["id"]) >= {"id.orig_h", "id.resp_p", "proto"}
    assert isinstance(first["time"], float) and first["class"] in ("benign", "attack")  # Zeek's ts, a number
    assert isinstance(first["id"]["id.resp_p"], int) and isinstance(first["id"]["id.orig_h"], str)
    # the checkpoint itself (PyTorch, its last block at the newest flow only) scores the same
    from_ckpt = detect("--model", str(zeek["ckpt"]), "--input", str(zeek["root"] / "test.log"), "--all")
    assert from_ckpt.returncode == 0, from_ckpt.stderr
    np.testing.assert_allclose([v["score"] for v in verdicts(from_ckpt.stdout)], expected, atol=1e-5)


@pytest.mark.slow  # processes of the entry points, 10-14 s
def test_a_checkpoint_scores_without_its_training_data(zeek, tmp_path):
    """A checkpoint keeps what a detector needs of its training data (time and group columns, the
    format read), so `mstr.detect --model <ckpt>` runs where the training log is gone."""
    run = tmp_path / "run"
    shutil.copytree(zeek["ckpt"].parent.parent, run)
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    cfg.data.path = str(tmp_path / "gone" / "train.log")
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    test_log = str(zeek["root"] / "test.log")
    assert zeek["ckpt"].name == "best.ckpt"
    moved = detect("--model", str(run), "--input", test_log, "--all")  # a run dir: its best checkpoint
    assert moved.returncode == 0, moved.stderr
    exported = detect("--model", str(zeek["artifact"]), "--input", test_log, "--all")
    got, expected = verdicts(moved.stdout), verdicts(exported.stdout)
    assert [v["id"] for v in got] == [v["id"] for v in expected] and len(got) > 1000
    np.testing.assert_allclose([v["score"] for v in got], [v["score"] for v in expected], atol=1e-5)
    (run / ".hydra" / "config.yaml").write_text("data: [unclosed\n")  # a run config that is not YAML: one line
    broken = detect("--model", str(run / "checkpoints" / zeek["ckpt"].name), "--input", test_log)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "no readable run config with a data section beside it" in broken.stderr.splitlines()[-1]


def test_an_input_refused_at_its_header_leaves_no_output_file(zeek, tmp_path):
    (tmp_path / "other.log").write_text("#separator \\x09\n#fields\tfoo\tbar\n1\t2\n")
    out = tmp_path / "alerts.jsonl"
    result = detect("--model", str(zeek["artifact"]), "--input", str(tmp_path / "other.log"), "--output", str(out))
    assert result.returncode == 2 and "other.log: its header lacks column(s)" in result.stderr
    assert "summary:" not in result.stderr  # nothing was scored: no count of lines read ahead
    assert not out.exists()
    clean = detect("--model", str(zeek["artifact"]), "--input", str(zeek["root"] / "test.log"), "--output", str(out))
    assert clean.returncode == 0 and out.is_file()  # written even when it holds no alert


def test_a_followed_log_is_read_across_rotation_truncation_and_recreation(zeek, tmp_path):
    """`--follow` reads a rotated conn.log as `tail -F` does: a path created after the detector started,
    the renamed file's successor, a file truncated in place, and a deleted one created again, each from
    its `#fields` header. The hosts'
    window context goes on across files, so the scores are those of one uninterrupted log."""
    import signal
    import time

    text = (zeek["root"] / "test.log").read_text().splitlines(keepends=True)
    header = [line for line in text if line.startswith("#") and not line.startswith("#close")]
    rows = [line for line in text if not line.startswith("#")]
    whole = detect("--model", str(zeek["artifact"]), "--input", str(zeek["root"] / "test.log"), "--all")
    expected = [v["score"] for v in verdicts(whole.stdout)][:60]
    log = tmp_path / "conn.log"
    with following(zeek["artifact"], log) as proc:
        said = [proc.stderr.readline()]  # a path not there yet is waited for, as tail -F waits
        while "waiting for it to be created" not in said[-1] and said[-1]:
            said.append(proc.stderr.readline())
        log.write_text("".join(header + rows[:30]))
        got = [proc.stdout.readline() for _ in range(30)]
        log.rename(tmp_path / "conn.log.1")  # rotation: a new file at the path
        log.write_text("".join(header + rows[30:50]))
        got += [proc.stdout.readline() for _ in range(20)]
        log.write_text("".join(header + rows[50:55]))  # truncated in place, shorter than before
        got += [proc.stdout.readline() for _ in range(5)]
        log.unlink()
        time.sleep(1.0)  # the detector finds the path gone and waits
        log.mkdir()  # then a path it cannot read: it waits on
        time.sleep(0.6)
        log.rmdir()
        log.write_text("".join(header + rows[55:60]))
        got += [proc.stdout.readline() for _ in range(5)]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate()
    err = "".join(said) + err
    assert proc.returncode == 130, err
    assert "conn.log: not there yet; waiting for it to be created" in said[-1]
    np.testing.assert_allclose([v["score"] for v in verdicts("".join(got) + out)], expected, atol=1e-5)
    assert "summary: flows seen 60, scored 60, dropped 0, bad 0" in err and "Traceback" not in err
    assert err.count("a new file; reading it from its start") == 2 and "truncated; reading it" in err
    assert "conn.log: gone (rotated away or deleted); waiting" in err
    assert "conn.log: cannot be read (Is a directory); waiting for a file that can be read" in err


def test_an_empty_input_says_it_held_no_flows(nsl, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    for empty in (tmp_path / "empty.txt", "/dev/null"):
        result = detect("--model", str(nsl["artifact"]), "--input", str(empty))
        assert result.returncode == 0 and f"{empty} held no flows" in result.stderr.splitlines()[-1]


def test_a_fifo_is_read_whole_without_its_first_bytes_sniffed_away(nsl, tmp_path):
    """A named pipe (or `<(zcat ...)`) is not a file: looking for a gzip's or a pcap's magic would eat
    its first bytes."""
    import threading

    fifo = tmp_path / "flows.fifo"
    os.mkfifo(fifo)
    text = "".join(nsl["lines"].read_text().splitlines(keepends=True)[:100])
    writer = threading.Thread(target=lambda: fifo.write_text(text), daemon=True)
    writer.start()
    result = detect("--model", str(nsl["artifact"]), "--input", str(fifo), "--all", "--follow")
    assert result.returncode == 0, result.stderr
    assert [v["flow"] for v in verdicts(result.stdout)] == list(range(1, 101))
    assert "flows seen 100, scored 100, dropped 0, bad 0" in result.stderr


def test_the_summary_accounts_for_every_flow_read():
    from mstr.deploy.stream import Summary

    stopped = Summary(received=10, headers=1, scored=5, dropped=1, bad=1)
    assert stopped.seen == 9 and "2 read but not scored (stopped)" in stopped.line()
    refused = Summary(received=40, headers=2, scored=20, refused_at=23)  # items read ahead of the refusal
    assert refused.seen == 20 and refused.unscored == 0 and "stopped" not in refused.line()


def test_flows_before_a_refused_header_are_scored_and_counted(zeek, tmp_path):
    """A second header without the model's columns ends the input (exit 2), after the flows before
    it, in the same batch too, were scored; none after it counts as seen."""
    text = (zeek["root"] / "test.log").read_text().splitlines(keepends=True)
    header = [line for line in text if line.startswith("#") and not line.startswith("#close")]
    rows = [line for line in text if not line.startswith("#")]
    (tmp_path / "two.log").write_text("".join([*header, *rows[:200], "#fields\tts\tuid\n", *rows[200:210]]))
    result = detect("--model", str(zeek["artifact"]), "--input", str(tmp_path / "two.log"), "--all")
    assert result.returncode == 2 and "its header lacks column(s)" in result.stderr.splitlines()[-1]
    assert len(verdicts(result.stdout)) == 200
    assert "summary: flows seen 200, scored 200, dropped 0, bad 0" in result.stderr


def test_the_encoder_counts_the_flows_holding_a_category_value_unseen_in_training():
    from mstr.deploy.features import FeatureEncoder

    prep = {"numeric_cols": ["a"], "categorical_cols": ["p", "s"], "log_cols": [], "center": [0], "scale": [1],
            "clip": 1e6, "categories": {"p": ["tcp", "udp"], "s": ["http"]},
            "feature_names": ["a", "p0", "p1", "p2", "s0", "s1"]}
    encoder = FeatureEncoder(prep)
    rows = [["tcp", "http"], ["icmp", "http"], ["udp", "dns"], ["sctp", "ssh"], ["udp", "http"]]
    encoded = encoder.encode(np.zeros((5, 1)), rows)
    assert encoded[1, 3] == 1 and encoded[2, 5] == 1  # each column's unknown bucket
    assert encoder.unseen == 3 and encoder.unseen_examples == {"p": "icmp", "s": "dns"}  # flows, not values
    encoder.encode(np.zeros((1, 1)), [["tcp", "ftp"]])
    assert encoder.unseen == 4 and encoder.unseen_examples == {"p": "icmp", "s": "dns"}  # the first kept


def test_window_context_is_bounded_and_causal():
    from mstr.deploy.stream import WindowContext

    context = WindowContext(window=3, num_features=1, max_groups=2)
    rows = np.arange(1, 6, dtype=np.float32)[:, None]
    out = context.windows(rows, ["a", "b", "a", "c", "a"])[..., 0]
    # "c" evicts "b" (least recently seen); "a" keeps its last two flows
    np.testing.assert_array_equal(out, [[0, 0, 1], [0, 0, 2], [0, 1, 3], [0, 0, 4], [1, 3, 5]])
    assert list(context.groups) == ["c", "a"] and context.evicted == 1


def test_flows_out_of_time_order_are_counted_for_windowed_models():
    """A host's flow earlier than its newest so far gets other context than training's time-sorted rows:
    counted, per host, in the summary (numbers and ISO 8601 dates; other date texts are not compared). A
    model of single flows scores alike in any order: nothing to count."""
    from mstr.deploy.sources import LineParser
    from mstr.deploy.stream import Detector, StreamRunner, WindowContext

    context = WindowContext(window=2, num_features=1, max_groups=2)
    times = ["10", "5", "11", "7", "12.5", "07/07/2017 11:59", None, 3]
    context.windows(np.zeros((8, 1)), ["a", "b", "a", "a", "b", "b", "b", "c"], times)
    assert context.out_of_order == 1  # a's 7 after its 11 (b's 5 is its first; its day-first text is not compared)
    context.windows(np.zeros((2, 1)), ["a", "c"], ["1", "2"])  # c evicted a, and a now evicts b
    assert context.out_of_order == 2 and context.newest == {"c": 3, "a": 1}  # a's 1: context forgotten with a

    prep = {"numeric_cols": ["a"], "categorical_cols": [], "log_cols": [], "center": [0], "scale": [1],
            "clip": 1e6, "categories": {}, "feature_names": ["a"]}
    lines = ["ts,host,a\n", "1,h1,0\n", "3,h1,0\n", "2,h1,0\n", "1,h2,0\n", "4,h1,0\n"]
    for window, expected in ((4, 1), (1, 0)):
        spec = {"input": {"format": "csv", "time_col": "ts", "group_col": "host"}, "window": window,
                "preprocessor": prep, "classes": ["benign", "attack"], "benign": ["benign"], "threshold": 0.5}
        detector = Detector(lambda x: np.tile([[0.9, 0.1]], (len(x), 1)), spec)
        summary = StreamRunner(detector, LineParser(spec, detector.encoder), lambda v: None).run(iter(lines))
        assert summary.out_of_order == expected and summary.to_json()["out_of_order"] == expected
        assert ("1 flow(s) out of time order" in summary.line()) == bool(expected)


def test_flows_out_of_time_order_are_counted_by_their_iso_dates():
    """The corrected CIC-IDS2017 CSVs write `Timestamp` as ISO text, and the shared per-class files are
    not in time order: their flows out of order were never counted, so the summary said nothing."""
    from mstr.deploy.stream import WindowContext

    context = WindowContext(window=2, num_features=1)
    times = ["2017-07-07 13:39:46.349992", "2017-07-07 13:39:36.267908", "2017-07-07 13:40:00",
             "2017-07-07T13:39:40+00:00"]
    context.windows(np.zeros((4, 1)), ["h1", "h1", "h2", "h1"], times)
    assert context.out_of_order == 2  # h1's 13:39:36 and 13:39:40 after its 13:39:46.35 (h2's is its first)


def test_encoder_matches_preprocessor_with_bins_frequent_values_unknown_categories_and_gaps(small_synthetic_dm):
    """Gaps (missing, infinite) too: a live record's get the training median as every split's did in
    training (a gap scored as the training mean made export refuse any model of data with gaps)."""
    from mstr.data.preprocessing import FlowPreprocessor
    from mstr.deploy.features import FeatureEncoder, repair

    train = small_synthetic_dm.tables["train"]
    prep = FlowPreprocessor.fit(train, numeric_bins=6, frequent_values=4)
    assert prep.frequent_values  # synthetic flows repeat ports and packet counts
    test = small_synthetic_dm.tables["test_synthetic"].take(np.arange(400))
    test.frame.loc[:20, "service"] = "never-seen"
    test.frame.loc[30:60, prep.numeric_cols[0]] = np.nan
    test.frame.loc[61:70, prep.numeric_cols[-1]] = np.inf
    encoder = FeatureEncoder(json.loads(json.dumps(prep.to_dict())))  # through JSON, as in an artifact
    numeric, repaired = repair(test.frame[prep.numeric_cols].to_numpy(dtype=np.float64))  # as detect reads them
    assert repaired.sum() == 41
    cats = test.frame[prep.categorical_cols].astype(str).values.tolist()
    np.testing.assert_array_equal(encoder.encode(numeric, cats), prep.transform(test))


def test_a_header_again_mid_stream_names_the_columns_of_the_lines_after_it():
    """Files joined with `cat a.csv b.csv`, b's columns in another order: b's header is read as a
    header (it was a bad line, and b's rows were then read in a's column order, silently wrong)."""
    from mstr.deploy.features import BadRecord, FeatureEncoder
    from mstr.deploy.sources import LineParser

    prep = {"numeric_cols": ["a", "b"], "categorical_cols": ["p"], "log_cols": [], "center": [0, 0],
            "scale": [1, 1], "clip": 1e6, "categories": {"p": ["tcp"]}, "feature_names": ["a", "b", "p0", "p1"]}
    parser = LineParser({"input": {"format": "csv"}, "window": 1}, FeatureEncoder(prep), "joined.csv")
    lines = ["a,b,p", "1,2,tcp", "3,4,tcp", "b,p,a", "6,tcp,5", "8,udp,7", "a,b", "x,9,tcp"]
    out = parser.parse_many(list(enumerate(lines, 1)))
    assert out[0] is None and out[3] is None
    assert [r.numeric.tolist() for r in out if r is not None and not isinstance(r, Exception)] == [
        [1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    assert isinstance(out[6], BadRecord) and isinstance(out[7], BadRecord)  # neither a header nor b's row
    # a column the model does not read ("id") where the first number went: still the header again
    parser = LineParser({"input": {"format": "csv"}, "window": 1}, FeatureEncoder(prep), "joined.csv")
    out = parser.parse_many(list(enumerate(["id,a,b,p", "10,1,2,tcp", "a,id,b,p", "5,11,6,tcp"], 1)))
    assert [r.numeric.tolist() for r in out if r is not None] == [[1.0, 2.0], [5.0, 6.0]]


def test_a_verdict_names_the_host_column_the_windows_follow_and_a_tsv_preset_keeps_its_tab():
    """`data.group_col=host`: the host is in each alert's `id` (it named only the 5-tuple columns it
    knew); CICFlowMeter columns in a TSV file: the artifact reads tabs (it read commas, so its own
    training file was refused)."""
    from omegaconf import OmegaConf

    from mstr.deploy.features import FeatureEncoder
    from mstr.deploy.sources import LineParser
    from mstr.training.export import input_spec

    prep = {"numeric_cols": ["a"], "categorical_cols": [], "log_cols": [], "center": [0], "scale": [1],
            "clip": 1e6, "categories": {}, "feature_names": ["a"]}
    parser = LineParser({"input": {"format": "csv", "group_col": "host"}, "window": 4}, FeatureEncoder(prep), "f.csv")
    out = parser.parse_many(list(enumerate(["host,Dst Port,a", "10.0.0.7,443,1"], 1)))
    assert out[1].ident == {"host": "10.0.0.7", "Dst Port": "443"}
    columns = {"time_col": "Timestamp", "group_col": "Src IP", "read_as": "cicflowmeter", "file_format": "tsv"}
    spec = input_spec(OmegaConf.create({"name": "flows", "format": None, "delimiter": None}), columns)
    assert spec["format"] == "cicflowmeter" and spec["delimiter"] == "\t"
    spec = input_spec(OmegaConf.create({"name": "flows", "format": None, "delimiter": None}),
                      {**columns, "file_format": "csv"})
    assert spec["delimiter"] is None


def test_zeek_columns_in_a_csv_file_make_a_detector_of_csv_lines():
    """A conn.log saved as CSV (IoT-23's CSV copies) is read with the zeek preset's roles: its detector read
    only Zeek logs, so it refused its own training file ('Zeek input without a '#fields' header line')."""
    from omegaconf import OmegaConf

    from mstr.training.export import input_spec

    data = OmegaConf.create({"name": "flows", "format": None, "delimiter": None})
    columns = {"time_col": "ts", "group_col": "id.orig_h", "read_as": "zeek"}
    assert input_spec(data, {**columns, "file_format": "csv"})["format"] == "csv"
    assert input_spec(data, {**columns, "file_format": "tsv"})["format"] == "tsv"
    assert input_spec(data, {**columns, "file_format": "zeek"})["format"] == "zeek"
    assert input_spec(data, {**columns, "file_format": None})["format"] == "zeek"  # checkpoints before file_format


def test_a_header_of_another_delimiter_says_so():
    """A ';' model given a ',' file (or a CSV model a TSV file) was told 'is this csv data?', naming as
    missing the columns that were all there in one field."""
    from mstr.deploy.features import FeatureEncoder
    from mstr.deploy.sources import LineParser
    from mstr.errors import DataError

    prep = {"numeric_cols": ["a"], "categorical_cols": [], "log_cols": [], "center": [0], "scale": [1],
            "clip": 1e6, "categories": {}, "feature_names": ["a"]}
    def parser():
        return LineParser({"input": {"format": "csv", "delimiter": ";"}}, FeatureEncoder(prep), "f.csv")

    with pytest.raises(DataError, match=re.escape("f.csv: its header is one field when split on ';', the delimiter "
                                                  "of the flows the model was trained on; write the flows with it "
                                                  "(header: 'host,a'...)")):
        parser().parse("host,a", 1)
    with pytest.raises(DataError, match=re.escape("f.csv: its header lacks column(s) ['a']")):
        parser().parse("b", 1)


def test_a_file_that_is_not_utf8_is_read_as_training_read_it(tmp_path):
    """Training reads a file that is not UTF-8 as Windows-1252; detect read it as UTF-8 with U+FFFD in
    place of each such byte, so an application 'Café' was 'Caf\ufffd', a category training never had."""
    from mstr.data.readers import read_table
    from mstr.deploy.inputs import open_text

    path = tmp_path / "flows.csv"
    path.write_bytes("app,bytes\nCafé,1\nTélé – 2,2\n".encode("cp1252"))
    with open_text(str(path)) as fh:
        apps = [line.split(",")[0] for line in fh.read().splitlines()[1:]]
    assert apps == read_table(path)["app"].tolist() == ["Café", "Télé – 2"]


def test_a_records_numbers_read_alike_on_the_fast_and_the_careful_path():
    """Plain number texts convert in one numpy call; missing tokens, infinities, huge counts, numbers
    given as numbers and bools take the value-by-value path: both give what training's reader gives."""
    from mstr.deploy.features import CLIP, BadRecord, FeatureEncoder

    prep = {"numeric_cols": ["a", "b", "c"], "categorical_cols": ["p"], "log_cols": [], "center": [0, 0, 0],
            "scale": [1, 1, 1], "clip": 1e6, "categories": {"p": ["tcp"]}, "feature_names": ["a", "b", "c", "p0", "p1"]}
    encoder = FeatureEncoder(prep)

    def parse(**values):
        return encoder.parse({"p": "tcp", **values}, 1, None, None, [], True)

    plain = parse(a="1", b=" 2.5", c="1e3")
    np.testing.assert_array_equal(plain.numeric, [1.0, 2.5, 1000.0])
    assert plain.repaired == 0
    odd = parse(a="-", b="inf", c="-1e13")  # missing, infinite (repaired, as NaN), clipped
    np.testing.assert_array_equal(odd.numeric, [np.nan, np.nan, -CLIP])
    assert odd.repaired == 2
    numbers = parse(a=3, b=4.5, c=np.int64(7))  # numpy scalars take the careful path, same values
    np.testing.assert_array_equal(numbers.numeric, [3.0, 4.5, 7.0])
    for bad in ({"a": "1", "b": "x", "c": "2"}, {"a": True, "b": "1", "c": "2"}, {"a": "1", "b": "2"}):
        with pytest.raises(BadRecord, match="'b' holds 'x'|'a' holds 'True'|no column 'c'"):
            parse(**bad)


def _outcome(got) -> tuple:
    """A parse outcome in comparable form (numbers with NaN as a string)."""
    from mstr.deploy.features import BadRecord

    if got is None or isinstance(got, BadRecord):
        return (type(got).__name__, str(got))
    return (got.seq, [str(v) for v in got.numeric], got.categories, got.group, got.time, got.ident, got.repaired)


@pytest.mark.parametrize("fmt", ["csv", "zeek", "nsl_kdd"])
def test_a_batch_of_lines_parses_as_its_lines_do_one_by_one(fmt):
    """`parse_many` splits plain data lines itself and converts their numbers together; headers (also a
    second Zeek header mid-batch that renames columns), comments, quotes, blank lines, missing tokens,
    infinities, huge and bad values and wrong field counts must come out as `parse` makes them."""
    from mstr.deploy.features import BadRecord, FeatureEncoder
    from mstr.deploy.sources import LineParser

    prep = {"numeric_cols": ["a", "b"], "categorical_cols": ["p"], "log_cols": [], "center": [0, 0],
            "scale": [1, 1], "clip": 1e6, "categories": {"p": ["tcp"]}, "feature_names": ["a", "b", "p0", "p1"]}
    rows = ["1,2.5,tcp,h1,t1", "0,0,udp,h2,t2", "0,0,tcp,h1,t3", " 3 ,1e3,tcp ,h1,t4", "-,inf,tcp,h2,t5",
            "1,-1e13,tcp,h3,t6", "1,lots,tcp,h1,t7", "1,2,tcp", "", "nan,2,tcp,h1,t8", "7,8,tcp,h1,t9,extra"]
    if fmt == "csv":
        source = {"format": "csv", "group_col": "host", "time_col": "ts"}
        lines = ["a,b,p,host,ts", *rows[:5], '"4",5,tcp,h2,t10', *rows[5:]]
    elif fmt == "zeek":
        source = {"format": "zeek", "group_col": "host", "time_col": "ts"}
        tab = [r.replace(",", "\t") for r in rows]
        lines = ["#separator \\x09", "#fields\ta\tb\tp\thost\tts", *tab[:6], "#close\tx",
                 "#fields\tb\ta\tp\tts\thost", *tab[6:], '4\t"5"\ttcp\th1\tt11']
    else:
        source = {"format": "nsl_kdd", "columns": ["a", "b", "p", "label", "difficulty"]}
        lines = [r.rsplit(",", 2)[0] for r in rows] + ["1,2,tcp,normal", "1,2,tcp,normal,21", "1,2,tcp,x,1,9", "1,2"]
    entries = [(seq, line + "\n") for seq, line in enumerate(lines, 1)]

    def one_by_one(parser):
        out = []
        for seq, line in entries:
            try:
                out.append(parser.parse(line, seq))
            except BadRecord as err:  # compared by message
                out.append(err)
        return out

    fresh = lambda: LineParser({"input": source}, FeatureEncoder(prep))  # noqa: E731
    expected = [_outcome(o) for o in one_by_one(fresh())]
    batched = fresh()
    got = [_outcome(o) for o in batched.parse_many(entries[:4]) + batched.parse_many(entries[4:])]
    assert got == expected
    assert sum(isinstance(o, tuple) and o[0] == "BadRecord" for o in got) >= 2  # the bad lines are in there
    assert any(o[-1] == 2 for o in got if isinstance(o[0], int))  # and a repaired one


def test_a_new_file_of_a_followed_input_is_read_from_its_own_header():
    """After a rotation (`NewFile`), a CSV input's first line is its header again, in whatever column
    order the new file has; a header-less format keeps the columns its spec names."""
    from mstr.deploy.features import FeatureEncoder
    from mstr.deploy.sources import LineParser, NewFile

    prep = {"numeric_cols": ["a", "b"], "categorical_cols": [], "log_cols": [], "center": [0, 0], "scale": [1, 1],
            "clip": 1e6, "categories": {}, "feature_names": ["a", "b"]}
    parser = LineParser({"input": {"format": "csv"}}, FeatureEncoder(prep))
    got = parser.parse_many([(1, "a,b\n"), (2, "1,2\n"), (2, NewFile("rotated")), (3, "b,a\n"), (4, "5,6\n")])
    assert got[0] is None and got[2] is None and got[3] is None
    assert got[1].numeric.tolist() == [1.0, 2.0] and got[4].numeric.tolist() == [6.0, 5.0]
    kdd = LineParser({"input": {"format": "nsl_kdd", "columns": ["a", "b"]}}, FeatureEncoder(prep))
    got = kdd.parse_many([(1, "1,2\n"), (1, NewFile("truncated")), (2, "3,4\n")])
    assert got[1] is None and got[2].numeric.tolist() == [3.0, 4.0]


def test_a_repeated_header_column_is_read_from_its_first_copy_as_in_training(caplog):
    from mstr.deploy.features import FeatureEncoder
    from mstr.deploy.sources import LineParser

    prep = {"numeric_cols": ["a", "b"], "categorical_cols": [], "log_cols": [], "center": [0, 0], "scale": [1, 1],
            "clip": 1e6, "categories": {}, "feature_names": ["a", "b"]}
    parser = LineParser({"input": {"format": "csv"}}, FeatureEncoder(prep), "flows.csv")
    lines = [(1, "a,b,a\n"), (2, "1,2,9\n"), (3, '1,"2",9\n')]  # the fast path, and the careful one (quotes)
    got = parser.parse_many(lines)
    assert got[1].numeric.tolist() == [1.0, 2.0] and got[2].numeric.tolist() == [1.0, 2.0]
    assert "flows.csv: repeated column(s) ['a'] in the header; the first copy of each is read" in caplog.text


def test_an_input_header_without_the_models_columns_names_the_file():
    from mstr.deploy.features import FeatureEncoder
    from mstr.deploy.sources import LineParser
    from mstr.errors import DataError

    prep = {"numeric_cols": ["a", "b"], "categorical_cols": [], "log_cols": [], "center": [0, 0], "scale": [1, 1],
            "clip": 1e6, "categories": {}, "feature_names": ["a", "b"]}
    parser = LineParser({"input": {"format": "csv"}}, FeatureEncoder(prep), "flows/today.csv")
    with pytest.raises(DataError, match=r"flows/today.csv: its header lacks column\(s\) \['b'\]"):
        parser.parse("a,c\n", 1)


def test_evaluate_scores_on_the_checkpoints_own_data_unless_told_otherwise(nsl, tmp_path):
    """No data=: the data config of the checkpoint's run (NSL-KDD, its 20% variant), so the test numbers
    are training's own, and data.* overrides change that config (before: "no such key", and with + a
    traceback); a run dir stands for its best checkpoint. Another data config that does not
    fit says which one the checkpoint was trained with."""
    from mstr.errors import ConfigError, DataError
    from mstr.evaluate import own_data_overrides, run

    run_dir = nsl["ckpt"].parent.parent
    trained = json.loads((run_dir / "metrics.json").read_text())
    scored = run(_compose("evaluate", [f"ckpt_path={run_dir}", f"paths.output_dir={tmp_path / 'own'}"]))
    for key in ("test/acc", "test/auroc", "test/novel_attack_recall"):
        assert scored[key] == pytest.approx(trained[key], abs=1e-6), key
    assert scored["audit/checkpoint_dev_rows_match"] is True
    # data.* without data=<name> changes the run's own data config (20% variant kept): one more test set
    argv = own_data_overrides([f"ckpt_path={run_dir}", f"data.test_files=[KDDTest+,{nsl['lines']}]"])
    assert argv[1].startswith("+data.test_files=") and own_data_overrides(["data=nsl_kdd", "data.variant=full"]) == [
        "data=nsl_kdd", "data.variant=full"]
    more = run(_compose("evaluate", [*argv, f"paths.output_dir={tmp_path / 'more'}"]))
    assert more["test_KDDTest+/acc"] == pytest.approx(trained["test/acc"], abs=1e-6), sorted(more)
    assert 0.3 < more["test_kdd_slice/acc"] <= 1 and more["audit/novel_attack_rows_kdd_slice"] > 0
    assert more["audit/checkpoint_dev_rows_match"] is True
    with pytest.raises(ConfigError, match=r"^data.test_filez: no such key in the data config the checkpoint was "
                                          r"trained with \(nsl_kdd\); did you mean data.test_files\?$"):
        run(_compose("evaluate", [f"ckpt_path={run_dir}", "+data.test_filez=[KDDTest+]", f"paths.output_dir={tmp_path}"]))
    with pytest.raises(ConfigError, match=r"^data.test_files: the data config the checkpoint was trained with "
                                          r"\(nsl_kdd\) holds a list there"):  # was a traceback
        run(_compose("evaluate", [f"ckpt_path={run_dir}", "+data.test_files.0=b", f"paths.output_dir={tmp_path}"]))
    with pytest.raises(DataError, match=r"missing column\(s\) .* and \d+ more .* was trained with data=nsl_kdd: "
                                        r"leave data= out to score on its own data, or add data=nsl_kdd$"):
        run(_compose("evaluate", [f"ckpt_path={nsl['ckpt']}", "data=synthetic", f"paths.output_dir={tmp_path}"]))


def test_a_closed_stdin_is_one_line_not_a_traceback(nsl):
    result = subprocess.run([sys.executable, "-m", "mstr.detect", "--model", str(nsl["artifact"])], cwd=REPO,
                            capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.close(0))  # `<&-`
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("error: --input - (the default): stdin is closed; give "
                                                      "--input FILE, or pipe the flows in")


def test_an_input_that_is_a_folder_is_named_as_such(nsl, tmp_path):
    proc = detect("--model", str(nsl["artifact"]), "--input", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"error: {tmp_path}: is a folder; give a "
                                                                           "flow file, - for stdin, or a pcap"]


def test_a_followed_pcap_that_is_not_there_yet_is_refused_not_waited_for_and_read_as_text(nsl, tmp_path):
    proc = detect("--model", str(nsl["artifact"]), "--input", str(tmp_path / "later.pcap"), "--follow")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'later.pcap'}: not there yet, and a pcap is read once, to its end (--follow waits for "
        "growing flow logs); run without --follow once the capture is written"]


def test_deploy_imports_neither_lightning_nor_hydra(nsl):
    code = f"""
import sys, numpy as np
from mstr.deploy.artifact import load_artifact
from mstr.deploy.runtime import artifact_scorer
from mstr.deploy.sources import LineParser
from mstr.deploy.stream import Detector, StreamRunner
art = load_artifact({str(nsl['artifact'])!r})
detector = Detector(artifact_scorer(art), art.spec)
got = []
StreamRunner(detector, LineParser(art.spec, detector.encoder), got.append).run(open({str(nsl['lines'])!r}))
assert len(got) > 0
banned = [m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning', 'hydra', 'omegaconf',
                                                         'pandas', 'torch', 'mstr.data', 'mstr.training')]
print(banned)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---- pcap through NFStream ---------------------------------------------------------------------------
@pytest.mark.slow
def test_pcap_scored_end_to_end_by_an_nfstream_model(tmp_path, data_dir):
    """Label the flows of a real pcap by the rules of its SOURCE.md, train `data=flows data.format=nfstream`
    on them, export, and score the pcap itself through mstr.detect; it scores like the same flows read
    from NFStream's CSV by the checkpoint (PyTorch)."""
    from nfstream import NFStreamer

    pcap = data_dir / "pcap_samples" / "test7-malicious.pcap"
    flows = NFStreamer(source=str(pcap)).to_pandas()
    external = ~flows["dst_ip"].str.startswith(("192.168.", "224.", "255.", "ff0", "8.8.8.8", "0.", "239."))
    flows["label"] = np.where((flows["src_ip"] == "192.168.2.16") & external, "attack", "benign")
    csv = tmp_path / "flows.csv"
    flows.to_csv(csv, index=False)
    ckpt = train_run(tmp_path / "run", ["data=flows", "data.format=nfstream", f"data.path={csv}", "data.window=1",
                                        "data.test_fraction=0.3", "data.val_fraction=0.2", "data.batch_size=32"])
    export(ckpt, tmp_path / "artifact")
    from_pcap = detect("--model", str(tmp_path / "artifact"), "--input", str(pcap), "--all")
    assert from_pcap.returncode == 0, from_pcap.stderr
    from_csv = detect("--model", str(ckpt), "--input", str(csv), "--all")
    assert from_csv.returncode == 0, from_csv.stderr
    a, b = verdicts(from_pcap.stdout), verdicts(from_csv.stdout)
    assert len(a) == len(b) == len(flows)
    assert [v["id"]["src_ip"] for v in a] == flows["src_ip"].tolist()
    # one JSON type per field whatever the input: the pcap's numbers, the CSV's number texts alike
    assert [(v["time"], v["id"]) for v in a] == [(v["time"], v["id"]) for v in b]
    assert isinstance(a[0]["id"]["src_port"], int) and isinstance(a[0]["time"], int)
    np.testing.assert_allclose([v["score"] for v in a], [v["score"] for v in b], atol=1e-5)
    assert f"scored {len(flows):,}, dropped 0" in from_pcap.stderr
    (tmp_path / "cut.pcap").write_bytes(pcap.read_bytes()[:300_000])  # a copy taken while it was written
    cut = detect("--model", str(tmp_path / "artifact"), "--input", str(tmp_path / "cut.pcap"))
    assert cut.returncode == 0 and "the capture breaks off inside a packet at byte 299,971 of 300,000" in cut.stderr
    assert "breaks off" not in from_pcap.stderr
    piped = subprocess.run([sys.executable, "-m", "mstr.detect", "--model", str(tmp_path / "artifact"), "--input", "-"],
                           input=pcap.read_bytes(), capture_output=True, cwd=REPO, timeout=300)  # `cat x.pcap |`
    last = piped.stderr.decode().strip().splitlines()[-1]
    assert piped.returncode == 2 and "binary data where a nfstream header should be" in last, last
    # a reader that goes away (`| head -2`): the detector ends, and so does NFStream's forked pcap reader,
    # which once kept our signal handlers, shrugged off the exit's SIGTERM, and was waited for for ever
    head = subprocess.Popen([sys.executable, "-m", "mstr.detect", "--model", str(tmp_path / "artifact"), "--input",
                             str(pcap), "--all"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert len(verdicts(head.stdout.readline() + head.stdout.readline())) == 2
        head.stdout.close()
        assert head.wait(timeout=60) == 0
    finally:
        try:
            os.killpg(head.pid, 9)  # what is left of its process group, after a hang
        except ProcessLookupError:
            pass


def test_bad_lines_past_the_first_ones_are_still_reported_with_their_count(nsl, monkeypatch, caplog):
    """A long stream of bad lines (a followed log gone wrong) does not go quiet after the first
    MAX_LOGGED_BAD: a line with the count so far follows, at most every WARNING_EVERY_S (0 here)."""
    import logging

    from mstr.deploy import stream
    from mstr.deploy.artifact import load_artifact
    from mstr.deploy.runtime import artifact_scorer
    from mstr.deploy.sources import LineParser

    art = load_artifact(nsl["artifact"])
    monkeypatch.setattr(stream, "WARNING_EVERY_S", 0.0)
    detector = stream.Detector(artifact_scorer(art), art.spec)
    runner = stream.StreamRunner(detector, LineParser(art.spec, detector.encoder), lambda v: None)
    good = nsl["lines"].read_text().splitlines(keepends=True)[:10]
    with caplog.at_level(logging.WARNING, logger="mstr.detect"):
        summary = runner.run(iter([*good, *["not,a,kdd,line\n"] * 30]))
    said = [r.getMessage() for r in caplog.records]
    assert summary.bad == 30 and summary.scored == 10
    assert sum("; skipped" in m for m in said) == 30 and "(30 bad lines so far)" in said[-1]
    assert "further bad lines: one every 0 s, with the count" in said[19]


def test_full_queue_drops_and_counts_instead_of_blocking(nsl):
    """With `block=False` (`--on-full drop`) a source never waits: when scoring is slower than arrival
    the bounded queue drops flows, and every flow is either scored or counted as dropped."""
    import time as clock

    from mstr.deploy.artifact import load_artifact
    from mstr.deploy.runtime import artifact_scorer
    from mstr.deploy.sources import LineParser
    from mstr.deploy.stream import Detector, StreamRunner

    art = load_artifact(nsl["artifact"])
    fast = artifact_scorer(art)

    def slow(x):
        clock.sleep(0.02)
        return fast(x)

    lines = nsl["lines"].read_text().splitlines(keepends=True)[:400]
    outcomes = {}
    for block in (False, True):
        detector = Detector(slow, art.spec)
        runner = StreamRunner(detector, LineParser(art.spec, detector.encoder), lambda v: None, queue_size=8,
                              batch_size=4, block=block, write_all=True)
        outcomes[block] = runner.run(iter(lines))
    dropping, waiting = outcomes[False], outcomes[True]
    assert dropping.dropped > 0 and dropping.scored + dropping.dropped == dropping.seen == 400
    assert waiting.dropped == 0 and waiting.scored == 400


def test_a_header_again_is_never_dropped_from_a_full_queue():
    """`cat a.csv b.csv | detect --on-full drop`: b's header (columns in another order) used to be
    dropped like a flow when the queue was full, and b's rows were then read in a's column order."""
    import time as clock

    from mstr.deploy.sources import LineParser
    from mstr.deploy.stream import Detector, StreamRunner

    prep = {"numeric_cols": ["a", "b"], "categorical_cols": [], "log_cols": [], "center": [0, 0], "scale": [1, 1],
            "clip": 1e6, "categories": {}, "feature_names": ["a", "b"]}
    spec = {"input": {"format": "csv"}, "window": 1, "preprocessor": prep, "classes": ["benign", "attack"],
            "benign": ["benign"], "threshold": 0.5}

    def slow(x):  # P(attack) = 1 where column a holds 1: which column a line's values are read into shows
        clock.sleep(0.01)
        attack = (x[:, -1, 0] == 1).astype(np.float32)
        return np.stack([1 - attack, attack], axis=1)

    lines = ["a,b\n", *["1,0\n"] * 200, "b,a\n", *["1,0\n"] * 200]  # b's rows: a = 0
    verdicts = []
    detector = Detector(slow, spec)
    runner = StreamRunner(detector, LineParser(spec, detector.encoder), verdicts.append, queue_size=4, batch_size=2,
                          block=False, write_all=True)
    summary = runner.run(iter(lines))
    assert summary.dropped > 0 and summary.headers == 2
    after = [v for v in verdicts if v.flow > 202]
    assert after and not any(v.alert for v in after)  # read as b's rows: column a holds 0
    assert all(v.alert for v in verdicts if v.flow <= 201)


def test_flow_queue_is_bounded_fifo_and_a_waiting_put_resumes_when_drained():
    import threading
    import time as clock

    from mstr.deploy.stream import FlowQueue

    q, stop = FlowQueue(3), threading.Event()
    assert [q.offer(i) for i in range(5)] == [True, True, True, False, False]
    assert q.take(2) == [0, 1] and q.take(10) == [2]
    for i in range(3):
        q.put(i, stop)
    waiter = threading.Thread(target=q.put, args=(3, stop))
    waiter.start()
    clock.sleep(0.05)
    assert waiter.is_alive()  # full: the put waits for room
    assert q.take(1) == [0]
    waiter.join(timeout=2)
    assert not waiter.is_alive() and q.take(10) == [1, 2, 3]


@pytest.mark.slow
def test_loss_benchmark_replays_each_level_and_reports_medians(nsl, tmp_path):
    """Offered far past capacity the queue must drop (median over repeats); every row's total is its parts."""
    from mstr.bench.__main__ import main as bench_main

    bench_main(["loss", "--model", str(nsl["artifact"]), "--shares", "0.5", "--rates", "0.25", "8",
                "--seconds", "0.3", "--repeats", "2", "--out", str(tmp_path)])
    text = (tmp_path / "loss.md").read_text()
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith("| 50% |")]
    assert len(rows) == 2 and "replayed 2 times" in text
    for _, _, _, dropped, spread, flagged, missed, total in rows:
        low, high = map(float, spread.split("-"))
        assert low <= float(dropped) <= high
        assert float(total) == pytest.approx(float(dropped) + float(flagged) + float(missed), abs=0.011)
    assert float(rows[1][3]) > 10  # 8x capacity: most of the stream cannot be inspected
    assert "Curves: `loss.png`" in text and (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_loss_benchmark_trains_and_exports_its_own_student_when_given_none(tmp_path):
    """Without --model the benchmark trains a student on full KDDTrain+ and exports it (the path a first
    run takes); a second call reuses both."""
    from mstr.bench.loss import student_artifact
    from mstr.deploy.artifact import load_artifact

    folder = student_artifact(tmp_path, epochs=1)
    artifact = load_artifact(folder)
    assert artifact.spec["data"] == "nsl_kdd" and artifact.spec["window"] == 1
    assert (tmp_path / "loss" / "student" / "metrics.json").is_file()
    assert student_artifact(tmp_path, epochs=1) == folder


@pytest.mark.parametrize("bad, named", [(["--repeats", "0"], "--repeats"), (["--queue", "-1"], "--queue"),
                                        (["--shares", "1.5"], "--shares"), (["--seconds", "nan"], "--seconds"),
                                        (["--rates", "inf"], "--rates")])
def test_loss_benchmark_refuses_bad_values_before_any_work(bad, named, capsys):
    from mstr.bench.loss import main

    with pytest.raises(SystemExit) as stop:
        main(bad)
    assert stop.value.code == 2 and named in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.slow  # the nsl fixture trains a student
def test_loss_benchmark_finds_kddtest_as_the_data_config_does(nsl, tmp_path, monkeypatch, capsys):
    """No KDDTest+ under the data root: one line naming the folder, exit 2, no report (was a traceback);
    a plain KDDTest+.txt is read as the nsl_kdd config reads it (was only .txt.gz)."""
    from mstr.bench.__main__ import main

    monkeypatch.setenv("MSTR_DATA_DIR", str(tmp_path / "data"))
    args = ["loss", "--model", str(nsl["artifact"]), "--shares", "0.5", "--rates", "0.5", "--seconds", "0.1",
            "--repeats", "1", "--out", str(tmp_path / "bench")]
    with pytest.raises(SystemExit) as stop:
        main(args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and "nsl_kdd: no such folder" in lines[-1] and not (tmp_path / "bench").exists()
    (tmp_path / "data" / "nsl_kdd").mkdir(parents=True)
    shutil.copy(nsl["lines"], tmp_path / "data" / "nsl_kdd" / "KDDTest+.txt")
    main(args)
    assert "| 50% |" in (tmp_path / "bench" / "loss.md").read_text()


@pytest.mark.slow  # the zeek fixture trains a detector
def test_loss_benchmark_refuses_a_detector_of_other_lines(zeek, tmp_path, capsys):
    from mstr.bench.__main__ import main

    with pytest.raises(SystemExit) as stop:
        main(["loss", "--model", str(zeek["artifact"]), "--out", str(tmp_path)])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and "its detector reads zeek lines" in line and "data=nsl_kdd" in line, line

def test_the_summary_does_not_call_a_folded_category_value_unseen():
    """A value too rare in training for a category of its own (data.max_categories) is encoded as the
    unknown category too: on UNSW-NB15's own file the summary called 2,155 flows' values, such as proto
    'igmp' (20 training rows), "unseen in training"."""
    from mstr.deploy.stream import Summary

    line = Summary(unseen_categories=2, unseen_examples={"proto": "igmp"}).line()
    assert "unseen in training" not in line
    assert "2 flow(s) with a category value outside training's categories (new, or too rare there: " \
           "data.max_categories; e.g. proto 'igmp'; scored as its unknown category)" in line


def test_sigint_prints_the_summary(nsl, tmp_path):
    import signal
    import time

    lines = nsl["lines"].read_text().splitlines(keepends=True)
    fields = lines[60].split(",")
    fields[2] = "smtp_new"  # a service training never saw: scored, and counted
    lines[60] = ",".join(fields)
    log = tmp_path / "growing.txt"
    log.write_text("".join(lines[:50]))
    with following(nsl["artifact"], log) as proc:
        # every verdict of the file so far, then a pause: the detector waits at the file's end. Appending
        # after its first verdict raced its reader, which could be still short of the end and never wait
        got = [proc.stdout.readline() for _ in range(50)]
        time.sleep(0.5)
        with open(log, "a") as fh:  # the file grows: the new lines are scored too
            fh.write("".join(lines[50:80]))
        while len(got) < 80:
            got.append(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate()
    assert proc.returncode == 130, err
    assert [v["flow"] for v in verdicts("".join(got) + out)] == list(range(1, 81))
    assert "summary: flows seen 80, scored 80, dropped 0, bad 0" in err and "Traceback" not in err
    assert "flows/s while scoring: the rest waited for input" in err  # a followed file idles: both rates
    assert "1 flow(s) with a category value outside training's categories (new, or too rare there: " in err
    assert "e.g. service 'smtp_new'; scored as" in err


def test_ctrl_c_while_the_model_loads_is_one_line_not_a_traceback(nsl):
    """Ctrl-C before the stream's handlers are set (a checkpoint takes seconds to load: torch,
    Lightning) raised a KeyboardInterrupt traceback; now one line, exit 130."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "mstr.detect", "--model", str(nsl["ckpt"]), "--input",
                             str(nsl["lines"])], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    deadline = time.monotonic() + 120
    while "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text() and time.monotonic() < deadline:
        time.sleep(0.02)  # torch is being imported: Python's own SIGINT handler is set, the stream's not yet
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted before any flow was read"


def test_pcap_samples_parse_into_nfstream_flows(data_dir):
    from mstr.deploy.sources import is_pcap, pcap_flows

    pcap = data_dir / "pcap_samples" / "malicious-ssh-bruteforce.pcap"
    assert is_pcap(str(pcap)) and not is_pcap(str(data_dir / "pcap_samples" / "SOURCE.md"))
    flows = list(pcap_flows(pcap))
    assert len(flows) == 67  # nmap ssh-brute: 67 TCP flows, per the capture's SOURCE.md
    assert {(f["src_ip"], f["dst_ip"], f["dst_port"], f["protocol"]) for f in flows} == {
        ("147.32.80.40", "147.32.80.37", 902, 6)}
    assert all(f["bidirectional_packets"] > 0 for f in flows)


def test_a_capture_libpcap_refuses_is_one_line_naming_the_file(data_dir, tmp_path):
    """A pcap cut inside its file header, or of a version libpcap does not read: NFStream raises a
    ValueError, which was a traceback (exit 1); now a `DataError` naming the file (exit 2)."""
    from mstr.deploy.sources import pcap_flows
    from mstr.errors import DataError

    whole = (data_dir / "pcap_samples" / "test7-malicious.pcap").read_bytes()
    for name, data in (("cut.pcap", whole[:10]), ("other.pcap", whole[:4] + b"\x09\x00\x09\x00" + whole[8:200])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=re.escape(f"{tmp_path / name}: NFStream cannot read it as a capture (")):
            list(pcap_flows(tmp_path / name))


def test_a_capture_cut_inside_a_packet_is_found_by_its_record_headers(data_dir, tmp_path):
    """libpcap and NFStream read a capture cut mid-packet to the cut without a word; its record headers
    say where it breaks off (libpcap: 24-byte file header, 16-byte record headers; pcapng: blocks)."""
    from mstr.deploy.sources import capture_cut_at

    whole = (data_dir / "pcap_samples" / "test7-malicious.pcap").read_bytes()
    for name, data, expected in (("whole.pcap", whole, None), ("header.pcap", whole[:24], None),
                                 ("in_record_header.pcap", whole[:30], 24), ("in_packet.pcap", whole[:300_000], 299_971)):
        (tmp_path / name).write_bytes(data)
        assert capture_cut_at(tmp_path / name) == expected, name

    def block(kind: int, body: bytes) -> bytes:  # a pcapng block: type, total length, body, total length
        return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    packet = bytes(60)
    ng = (block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))  # section header, little-endian
          + block(1, struct.pack("<HHI", 1, 0, 65535))  # interface description: Ethernet
          + block(6, struct.pack("<IIIII", 0, 0, 0, len(packet), len(packet)) + packet))  # an enhanced packet
    (tmp_path / "whole.pcapng").write_bytes(ng)
    (tmp_path / "cut.pcapng").write_bytes(ng[:-10])
    assert capture_cut_at(tmp_path / "whole.pcapng") is None
    assert capture_cut_at(tmp_path / "cut.pcapng") == len(ng) - (12 + 20 + len(packet))


def test_a_gzipped_pcap_is_named_as_such(nsl, data_dir, tmp_path):
    """`capture.pcap.gz` was read as text: "binary data where a ... header should be; give a pcap or a gzip
    file" to a CSV model, which had been given exactly that, and every line a bad line to a KDD model."""
    pcap = tmp_path / "capture.pcap.gz"
    pcap.write_bytes(gzip.compress((data_dir / "pcap_samples" / "malicious-ssh-bruteforce.pcap").read_bytes()))
    result = detect("--model", str(nsl["artifact"]), "--input", str(pcap))
    assert result.returncode == 2 and result.stdout == "" and "summary:" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (f"error: {pcap}: a gzip-compressed capture, which NFStream "
                                                      "does not read; gunzip it and give the pcap itself")


def test_truncated_gzip_input_stops_with_one_line_after_scoring_what_it_read(nsl, tmp_path):
    data = gzip.compress(nsl["lines"].read_bytes())
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(data[: len(data) // 2])
    result = detect("--model", str(nsl["artifact"]), "--input", str(cut), "--all", "--summary", str(tmp_path / "s.json"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot be read further" in result.stderr.strip().splitlines()[-1]
    scored = len(verdicts(result.stdout))
    assert 0 < scored < 1500 and f"flows seen {scored + 1:,}, scored {scored:,}, dropped 0, bad 1" in result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())  # the file says what stderr says
    assert (summary["seen"], summary["scored"], summary["bad"]) == (scored + 1, scored, 1)
    assert f"line {scored + 1}: cut short where the input breaks off" in result.stderr  # not lost, not scored


def test_the_line_a_truncated_gzip_breaks_off_in_is_a_bad_line_not_lost(tmp_path):
    """Broken off inside a line, a gzip hands that line over as a `CutLine` (counted bad), not lost nor
    scored with its last value cut short; broken off at a line's end, every line is whole. Either way the
    read error follows."""
    import zlib

    from mstr.deploy.features import BadRecord, FeatureEncoder
    from mstr.deploy.inputs import lines, open_text
    from mstr.deploy.sources import CutLine, LineParser
    from mstr.errors import DataError

    data = gzip.compress("".join(f"{i},{i * 7919 % 10007}\n" for i in range(30000)).encode())
    cuts, stream, last = {}, zlib.decompressobj(31), b""
    for cut in range(1, len(data)):  # a byte at a time: what the first `cut` bytes decode to ends with `last`
        last = stream.decompress(data[cut - 1:cut])[-1:] or last
        if cut >= len(data) // 2:
            cuts.setdefault(last == b"\n", cut)
        if len(cuts) == 2:
            break
    for at_line_end, cut in cuts.items():
        path = tmp_path / f"cut{cut}.csv.gz"
        path.write_bytes(data[:cut])
        whole = zlib.decompressobj(31).decompress(data[:cut]).decode().splitlines(keepends=True)
        got = []
        with pytest.raises(DataError, match="cannot be read further"):
            got.extend(lines(open_text(str(path)), False, str(path)))
        assert got == (whole if at_line_end else [*whole[:-1], CutLine(whole[-1])])
    prep = {"numeric_cols": ["a", "b"], "categorical_cols": [], "log_cols": [], "center": [0, 0], "scale": [1, 1],
            "clip": 1e6, "categories": {}, "feature_names": ["a", "b"]}
    parser = LineParser({"input": {"format": "csv"}, "window": 1}, FeatureEncoder(prep))
    parsed = parser.parse_many([(1, "a,b\n"), (2, "1,2\n"), (3, CutLine("3,4"))])  # "3,4": perhaps "3,41"
    assert parsed[0] is None and parsed[1].numeric.tolist() == [1.0, 2.0] and isinstance(parsed[2], BadRecord)
