"""`mstr.data.fetch` against a local HTTP server: verified, atomic downloads; one-line errors."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from mstr.data import fetch
from mstr.errors import DataError

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def _serving(handler):
    """The base URL of an HTTP server on 127.0.0.1 in a thread, answering with `handler`."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(tmp_path):
    """(folder served, base URL) of an HTTP server on 127.0.0.1 in a thread."""
    served = tmp_path / "served"
    served.mkdir()
    with _serving(functools.partial(_Quiet, directory=str(served))) as base:
        yield served, base


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_never_leaves_a_bad_file(server, tmp_path):
    served, base = server
    payload = gzip.compress(b"0,tcp,http,SF,181,5450\n" * 500)
    (served / "flows.csv.gz").write_bytes(payload)
    target = tmp_path / "root" / "flows.csv.gz"
    assert fetch.download(f"{base}/flows.csv.gz", target, _sha(payload)) == _sha(payload)
    assert target.read_bytes() == payload and _leftovers(target.parent) == ["flows.csv.gz"]

    other = tmp_path / "other" / "flows.csv.gz"
    with pytest.raises(DataError, match="does not match the official.*nothing was saved"):
        fetch.download(f"{base}/flows.csv.gz", other, "0" * 64)
    assert _leftovers(other.parent) == []  # no file, no temporary
    with pytest.raises(DataError, match="HTTP 404"):
        fetch.download(f"{base}/missing.csv.gz", other, None)
    assert _leftovers(other.parent) == []


def test_cli_wrong_checksum_exits_2_with_one_line_and_no_files(server, tmp_path):
    served, base = server
    (served / "nsl_kdd").mkdir()
    (served / "nsl_kdd" / "NSL_KDD.zip").write_bytes(gzip.compress(b"not the official zip"))
    root = tmp_path / "data"
    env = {**os.environ, "MSTR_FETCH_BASE_URL": base}
    proc = subprocess.run([sys.executable, "-m", "mstr.data.fetch", "nsl_kdd", "--root", str(root)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "NSL_KDD.zip: sha256" in proc.stderr and "does not match" in proc.stderr
    assert _leftovers(root / "nsl_kdd") == []


def test_archive_members_are_extracted_verified_then_found_present(server, tmp_path, monkeypatch):
    served, base = server
    members = {"KDDTrain+.txt": b"0,tcp,http,SF,normal,21\n" * 100, "KDDTest+.txt": b"0,udp,dns,SF,normal,20\n"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(f"NSL_KDD/{name}", data)
    (served / "toy").mkdir()
    (served / "toy" / "toy.zip").write_bytes(buffer.getvalue())
    source = fetch.Source(folder="toy_data", files=(fetch.Remote(
        "toy.zip", _sha(buffer.getvalue()), {"KDDTrain+.txt": _sha(members["KDDTrain+.txt"]), "KDDTest+.txt": None}),))
    monkeypatch.setitem(fetch.DATASETS, "toy", source)
    monkeypatch.setenv("MSTR_FETCH_BASE_URL", base)
    lines = fetch.fetch("toy", tmp_path)
    folder = tmp_path / "toy_data"
    assert _leftovers(folder) == ["KDDTest+.txt", "KDDTrain+.txt"]  # the zip itself is gone
    assert (folder / "KDDTrain+.txt").read_bytes() == members["KDDTrain+.txt"]
    assert any("KDDTrain+.txt (sha256 verified)" in line for line in lines)
    shutil.rmtree(served / "toy")  # a second run must not need the network
    assert all(line.startswith("present") for line in fetch.fetch("toy", tmp_path))
    (folder / "KDDTrain+.txt").write_bytes(b"edited\n")
    with pytest.raises(DataError, match="KDDTrain\\+.txt: sha256 .* is not the official file's"):
        fetch.fetch("toy", tmp_path)


def test_shared_data_verifies_against_the_recorded_checksums(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("MSTR_FETCH_BASE_URL", "http://127.0.0.1:9")  # nothing may be downloaded
    (tmp_path / "nsl_kdd").mkdir()
    for path in (data_dir / "nsl_kdd").glob("*.txt.gz"):
        (tmp_path / "nsl_kdd" / path.name).symlink_to(path)
    (tmp_path / "nsl_kdd" / "KDDTest-21.txt").write_text("user's own copy\n")
    lines = fetch.fetch("nsl_kdd", tmp_path)
    assert sum("sha256 verified" in line for line in lines) == 3 and len(lines) == 4
    assert fetch.fetch("cic_ids2017_sample", data_dir)[0].startswith("present")


def test_a_damaged_file_in_place_or_a_root_that_is_a_file_is_one_line(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("MSTR_FETCH_BASE_URL", "http://127.0.0.1:9")  # nothing may be downloaded
    (tmp_path / "nsl_kdd").mkdir()
    damaged = tmp_path / "nsl_kdd" / "KDDTest+.txt.gz"
    damaged.write_bytes(b"x\n")  # not gzip
    with pytest.raises(DataError, match="KDDTest\\+.txt.gz: cannot be read .*move it away and fetch again"):
        fetch.fetch("nsl_kdd", tmp_path)
    damaged.unlink()
    (tmp_path / "nsl_kdd" / "KDDTest+.txt").mkdir()
    with pytest.raises(DataError, match="KDDTest\\+.txt: is a folder, not the file; move it away and fetch again"):
        fetch.fetch("nsl_kdd", tmp_path)
    root = tmp_path / "a_file"
    root.write_text("")
    with pytest.raises(DataError, match="a_file: is a file, so .* cannot be made; give a folder as --root"):
        fetch.fetch("nsl_kdd", root)
    # a root the user cannot write: said before any download (the server here is down, and was blamed)
    monkeypatch.setattr(fetch.os, "access", lambda path, mode: False)  # root may write anywhere
    with pytest.raises(DataError, match=f"^{tmp_path}: not writable, so .*other/data/nsl_kdd cannot be filled; give another"):
        fetch.fetch("nsl_kdd", tmp_path / "other" / "data")


def test_manual_datasets_say_where_to_get_them_and_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match=r"distrinet-research.be/CNS2022.*into .*cic_ids2017_improved"):
        fetch.fetch("cic_ids2017", tmp_path)
    with pytest.raises(DataError, match=r"unknown dataset 'kdd99'; choose from"):
        fetch.fetch("kdd99", tmp_path)
    assert "research.unsw.edu.au" in fetch.DATASETS["unsw_nb15"].manual


def test_a_failed_fetch_leaves_the_folder_as_it_was_and_a_bad_mirror_or_short_download_says_so(
        server, tmp_path, monkeypatch):
    """A dataset of several files whose third fails: the two fetched before it are removed, since a
    loader would read the folder as the whole dataset (8 of CIC-IDS2017's 16 classes, say); a file
    that was there before stays. A mirror that is no URL, and a download cut short, are named as such."""
    served, base = server
    files = {name: f"{name},1\n".encode() * 100 for name in ("a.csv", "b.csv", "c.csv")}
    (served / "tiny").mkdir()
    for name, data in list(files.items())[:2]:
        (served / "tiny" / name).write_bytes(data)
    monkeypatch.setitem(fetch.DATASETS, "tiny", fetch.Source(
        folder="tiny", base_url="unused", files=tuple(fetch.Remote(n, _sha(d)) for n, d in files.items())))
    monkeypatch.setenv("MSTR_FETCH_BASE_URL", base)
    folder = tmp_path / "data" / "tiny"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes(files["a.csv"])  # present and verified before: kept
    with pytest.raises(DataError, match=r"c.csv: HTTP 404 .*\(the 1 file\(s\) fetched before it were removed\)$"):
        fetch.fetch("tiny", tmp_path / "data")
    assert _leftovers(folder) == ["a.csv"]
    (served / "tiny" / "c.csv").write_bytes(files["c.csv"])
    assert [line.split()[0] for line in fetch.fetch("tiny", tmp_path / "data")] == ["present", "saved", "saved"]
    monkeypatch.setenv("MSTR_FETCH_BASE_URL", "notaurl")
    with pytest.raises(DataError, match=r"^MSTR_FETCH_BASE_URL=notaurl: not an http\(s\):// or file:// URL"):
        fetch.fetch("tiny", tmp_path / "other")

    class _Short(_Quiet):  # says 1,000 bytes, sends 10, closes
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")

    with _serving(_Short) as short, pytest.raises(DataError, match=r"the download ended early \(10 of 1,000 bytes\)"):
        fetch.download(f"{short}/x.csv", tmp_path / "short" / "x.csv", None)
    assert _leftovers(tmp_path / "short") == []


def test_a_chunked_download_cut_short_or_a_port_that_is_no_number_is_one_line(tmp_path):
    """http.client's own errors (no OSError) are the download's one-line error too, and leave nothing."""

    class _CutChunked(_Quiet):  # one chunk, then the connection closes without the last chunk
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"a\r\n0123456789\r\n")

    with _serving(_CutChunked) as cut, pytest.raises(DataError, match=r"x.csv: cannot download \(IncompleteRead\(10 "):
        fetch.download(f"{cut}/x.csv", tmp_path / "cut" / "x.csv", None)
    assert _leftovers(tmp_path / "cut") == []
    with pytest.raises(DataError, match=r"cannot download \(nonnumeric port: 'ab'\)"):
        fetch.download("http://127.0.0.1:ab/x.csv", tmp_path / "port" / "x.csv", None)


def test_ctrl_c_removes_the_files_fetched_before_it_and_says_so_in_one_line(server, tmp_path, monkeypatch, capsys):
    """Ctrl-C in the second file's download: the first file goes too (all or nothing, as for an
    error), and the command ends with one line and exit code 130, not a traceback."""
    served, base = server
    files = {name: f"{name},1\n".encode() * 100 for name in ("a.csv", "b.csv")}
    (served / "tiny").mkdir()
    for name, data in files.items():
        (served / "tiny" / name).write_bytes(data)
    monkeypatch.setitem(fetch.DATASETS, "tiny", fetch.Source(
        folder="tiny", base_url="unused", files=tuple(fetch.Remote(n, _sha(d)) for n, d in files.items())))
    monkeypatch.setenv("MSTR_FETCH_BASE_URL", base)
    download = fetch.download

    def ctrl_c_in_b(url, dest, sha256):
        if dest.name == "b.csv":
            raise KeyboardInterrupt
        return download(url, dest, sha256)

    monkeypatch.setattr(fetch, "download", ctrl_c_in_b)
    with pytest.raises(SystemExit) as stop:
        fetch.main(["tiny", "--root", str(tmp_path / "data")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 130 and len(lines) == 1 and lines[0].startswith("interrupted by SIGINT"), lines
    assert _leftovers(tmp_path / "data" / "tiny") == []


def test_sigterm_mid_download_keeps_nothing(tmp_path, data_dir):
    """SIGTERM (`timeout`, a scheduler) in the second file: no temporary file, and the first file is
    removed as well (a folder of one CIC class would read as the dataset); one line, exit 143."""
    import signal
    import time

    first = gzip.decompress((data_dir / "cic_ids2017_improved" / "BENIGN_5000.csv.gz").read_bytes())

    class _FirstThenStall(_Quiet):  # the first file whole, the next one a trickle
        def do_GET(self) -> None:
            body = first if "BENIGN_5000" in self.path else None
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) if body else 10**8))
            self.end_headers()
            if body:
                self.wfile.write(body)
                return
            with contextlib.suppress(OSError):
                for _ in range(600):
                    self.wfile.write(b"x" * 1000)
                    time.sleep(0.05)

    folder = tmp_path / "cic_ids2017_improved"
    with _serving(_FirstThenStall) as base:
        proc = subprocess.Popen([sys.executable, "-m", "mstr.data.fetch", "cic_ids2017_sample", "--root", str(tmp_path)],
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "MSTR_FETCH_BASE_URL": base})
        try:
            deadline = time.monotonic() + 60
            while not any(p.name.startswith(".Botnet") for p in folder.glob(".*")) and time.monotonic() < deadline:
                time.sleep(0.05)  # the first file is in place, the second one under way
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 143 and err.strip().splitlines() == [
        "interrupted by SIGTERM: nothing of this fetch was kept; run it again to fetch the dataset"], err
    assert _leftovers(folder) == []
