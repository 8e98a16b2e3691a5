"""`python -m mstr.data.fetch NAME [--root DIR]`: put a dataset's files where its loader looks
(`<root>/<folder>`, root defaulting to $MSTR_DATA_DIR or ./data), each verified by sha256.

Sources are pinned commits of public copies whose bytes are the official files; the sha256 values
are those recorded for the project's shared data (its SOURCE.md files), so a file that verifies is
byte-identical to what the project's results were computed on. Files already present (plain or
gzipped) are verified instead of downloaded. A download goes to a temporary file in the target
folder and is renamed only once its sha256 matched, so a failed, interrupted or tampered download
leaves nothing behind. What the publishers only hand out through a form or a click is not
downloaded: the command says where to get it and which folder to put it in.

    nsl_kdd             KDDTrain+, KDDTrain+_20Percent, KDDTest+, KDDTest-21 (the official zip)
    unsw_nb15           the 82,332-record partition; the 175,341-record one is a manual download
    cic_ids2017         the CNS2022 corrected CIC-IDS2017: a manual download
    cic_ids2017_sample  the 43,419-flow stratified sample of it that the project's data holds

MSTR_FETCH_BASE_URL=URL fetches `URL/<NAME>/<file>` instead (a local mirror, or a test server).
Errors are one line on stderr and exit code 2; Ctrl-C or SIGTERM is one line and exit code 130 or 143,
keeping nothing of what was fetched.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import http.client
import os
import signal
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Optional

from mstr.cli_args import ArgumentParser
from mstr.errors import DataError, MstrError, report_and_exit

CHUNK = 1 << 20
TIMEOUT_S = 60


@dataclass(frozen=True)
class Remote:
    """One file at the source; a zip names the members to extract (sha256 None: not recorded)."""

    name: str
    sha256: Optional[str]
    members: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    folder: str  # under the data root, where the loader looks
    base_url: Optional[str] = None
    files: tuple = ()
    manual: Optional[str] = None  # the hand step, with {folder} for the target folder


_GITHUB = "https://raw.githubusercontent.com"
_CIC_SAMPLE = {  # file -> sha256 of the CSV, from cic_ids2017_improved/SOURCE.md
    "BENIGN_5000": "4eb03c14763fe5ff4f58e713e39ad930cfdec264e8d5262b4acd6df3227298ae",
    "Botnet_736": "55b49f70d1d7df13644a3d5f01abb742e35cda5d952ee43c737eaa38a1a6ea79",
    "DDoS_5000": "36eb4d2851997237b4b13e9f4c8175563d5236c784dcf7247b7b46b08dc62815",
    "DoS_GoldenEye_5000": "cb6f7b734168b643153cd45ce7f552e8b073b5b8a744c1a2a02763212d2cec6c",
    "DoS_Hulk_5000": "64789076d2559ce1e4bead0fcbe2b806de2b3c5cd97771705295cafd3ed0cfb7",
    "DoS_Slowhttptest_1740": "4159ba005254aa8b0a0c04b47844f2221369279eedf19308fa9875cc075f3534",
    "DoS_Slowloris_3859": "8114bfec656df7e8c4b9d539640ad3b01ad50794a2faa9fb0ccf5884ca03f157",
    "FTP-Patator_3972": "73355b1584316393ec7b367407db0e2914d18692eff3bd7b9cc91ed89daa8145",
    "Heartbleed_11": "bf610cc626325778dda3e54b431cc60142f6b8bffedb1f9b8a7f9481a673ea55",
    "Infiltration_-_Portscan_5000": "1a7a6a0906995f2eb6f2ea951b3d4ee024010e9e15783efb0a19c3c04876308d",
    "Infiltration_36": "3cd57b9cd7a7a9f7fa98f2c4d2147febafe551cc9d9b86a949a6947cda576beb",
    "Portscan_5000": "022a5885f6704f8c4ab0ef888b31e5ee1aef46b6c64fe6b3c039e51f93f31c96",
    "SSH-Patator_2961": "07319168e4435ea24439f64ece1dcf64ad1c2c58cce9e062e9cba757aea94709",
    "Web_Attack_-_Brute_Force_73": "d244df46f686a48ded36b0328ad14e80beee1c5560fede0e3f07cea02ee030d9",
    "Web_Attack_-_SQL_Injection_13": "aca6ed973bf1ace011a44ddfc3914393895828666314a018e7581e27343be1e0",
    "Web_Attack_-_XSS_18": "51ffc2d6d24497e11768b2b80beca3a15353d76c3e28f5c98affc24e8affb94e",
}
DATASETS = {
    "nsl_kdd": Source(
        folder="nsl_kdd",
        base_url=f"{_GITHUB}/mekkheir/Dataset/ac0e7dddad3326d8103f8ae8a3881f3ef2a36b62",
        files=(Remote("NSL_KDD.zip", "3ba51add3e2042b2731d2e28623176c445d5de14b644cb099bde425f6195fb39", {
            "KDDTrain+.txt": "1b86d2f957b33082081bba410fe129b475efebcc13c9014c3f447c8271aadf95",
            "KDDTrain+_20Percent.txt": "7ea86479faab5ca2190b7f18b4982fb058ce5bf2b46e0e1017d0d9ef90f9c16e",
            "KDDTest+.txt": "fa46b0935342616aa83b7c2578db355b6a7aaabbc492248172c7a1e8b7ab8f84",
            "KDDTest-21.txt": None,  # covered by the zip's sha256
        }),),
    ),
    "unsw_nb15": Source(
        folder="unsw_nb15",
        base_url=f"{_GITHUB}/akritiupadhyay-au/Cyber-Attack-Detection-with-Random-Forest/"
                 "f666564e36db598d9e667bab58f97f955f095d99",
        files=(Remote("UNSW_NB15_training-set.csv.zip",
                      "5ec6c31706a68cf4e2ec2602eb99db23c85cbe085a135160c182b3e07336f55c",
                      {"UNSW_NB15_training-set.csv":
                       "734fe6642edf758f7c94d7d9149426b49d202fe8e7bf0bef47392489c3c0a559"}),),
        manual="the other UNSW-NB15 partition file (175,341 records, circulated as "
               "UNSW_NB15_testing-set.csv) is only handed out by the publisher: open "
               "https://research.unsw.edu.au/projects/unsw-nb15-dataset, follow the download link "
               "to the 'Training and Testing Sets' folder and save UNSW_NB15_testing-set.csv into "
               "{folder}; without it the loader splits the file above",
    ),
    "cic_ids2017": Source(
        folder="cic_ids2017_improved",
        manual="the corrected CIC-IDS2017 (CNS2022) is downloaded by hand: open "
               "https://intrusion-detection.distrinet-research.be/CNS2022/Datasets/, download the "
               "CIC-IDS-2017 flow CSVs (one per day) and put them, unzipped or gzipped, into "
               "{folder}; or run `python -m mstr.data.fetch cic_ids2017_sample` for the project's "
               "43,419-flow sample of it",
    ),
    "cic_ids2017_sample": Source(
        folder="cic_ids2017_improved",
        base_url=f"{_GITHUB}/ScubaInstructor/fuh/86d1bab5ca174da11e20bc54d9642ba6068f273a/"
                 "nids-daten/sampled_CICIDS2017_improved_rnd_5000",
        files=tuple(Remote(f"{name}.csv", sha) for name, sha in _CIC_SAMPLE.items()),
    ),
}


# --------------------------------------------------------------------------- verification


def _sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _present(folder: Path, name: str, sha256: Optional[str]) -> Optional[Path]:
    """The file (plain or .gz) if it is there; an error if it is there with other content."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_dir():  # else the download's rename onto it fails, and the error would blame the network
            raise DataError(f"{path}: is a folder, not the file; move it away and fetch again")
        if not path.is_file():
            continue
        if sha256 is not None:
            try:
                with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
                    got = _sha256(fh)
            except (OSError, EOFError, zlib.error) as err:  # a damaged gzip, an unreadable file
                raise DataError(f"{path}: cannot be read ({' '.join(str(err).split())[:120]}); move it away "
                                "and fetch again") from None
            if got != sha256:
                raise DataError(f"{path}: sha256 {got} is not the official file's {sha256}; move it "
                                "away and fetch again")
        return path
    return None


# --------------------------------------------------------------------------- writing


class _Staged:
    """A temporary file beside `dest`, hashed while written, renamed onto `dest` by `commit` only;
    removed on any failure (including Ctrl-C), so no half or unverified file is ever left."""

    def __init__(self, dest: Path):
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        except OSError as err:
            raise DataError(f"{dest.parent}: cannot write there ({err.strerror or err}); "
                            "choose another --root") from None
        self.dest, self.tmp, self.fh = dest, Path(tmp), os.fdopen(fd, "wb")
        self.digest = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.fh.write(chunk)

    def commit(self, sha256: Optional[str], origin: str) -> str:
        self.fh.close()
        got = self.digest.hexdigest()
        if sha256 is not None and got != sha256:
            raise DataError(f"{origin}: sha256 {got} does not match the official {sha256}: a corrupt "
                            f"or different file; nothing was saved to {self.dest.parent}")
        os.replace(self.tmp, self.dest)
        return got

    def __enter__(self) -> "_Staged":
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


def download(url: str, dest: Path, sha256: Optional[str]) -> str:
    """Fetch `url` into `dest` atomically, refusing content whose sha256 differs; returns it."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, _Staged(dest) as staged:
            received = 0
            while chunk := response.read(CHUNK):
                staged.write(chunk)
                received += len(chunk)
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and received < int(expected):
                raise DataError(f"{url}: the download ended early ({received:,} of {int(expected):,} bytes); "
                                "try again")
            return staged.commit(sha256, url)
    except urllib.error.HTTPError as err:
        raise DataError(f"{url}: HTTP {err.code} {err.reason}; download it by hand into {dest.parent}") from None
    # http.client's own errors are no OSError: a chunked body cut short (IncompleteRead), a port that
    # is no number (InvalidURL)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        raise DataError(f"{url}: cannot download ({reason}); check the network or download it by hand "
                        f"into {dest.parent}") from None


def _extract(archive: Path, members: dict, folder: Path, origin: str, fetched: list[Path]) -> list[str]:
    """Extract the named members (matched by file name, wherever they sit in the zip), verified; each
    path written is appended to `fetched`."""
    lines = []
    try:
        with zipfile.ZipFile(archive) as zf:
            found = {Path(i.filename).name: i for i in zf.infolist() if not i.is_dir()}
            missing = [m for m in members if m not in found]
            if missing:
                raise DataError(f"{origin}: the archive lacks {missing}; it is not the expected release")
            for name, sha256 in members.items():
                if _present(folder, name, sha256):
                    continue
                with zf.open(found[name]) as src, _Staged(folder / name) as staged:
                    while chunk := src.read(CHUNK):
                        staged.write(chunk)
                    got = staged.commit(sha256, f"{origin}:{name}")
                fetched.append(folder / name)
                lines.append(_saved(folder / name, got, sha256))
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        raise DataError(f"{origin}: not a readable zip archive ({err})") from None
    return lines


def _saved(path: Path, got: str, sha256: Optional[str]) -> str:
    check = "sha256 verified" if sha256 else f"no recorded sha256 (got {got}), covered by its archive"
    return f"saved {path} ({check})"


# --------------------------------------------------------------------------- commands


def fetch(name: str, root: Path) -> list[str]:
    """Make dataset `name` present under `root`; returns what was done, one line per file."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    source = DATASETS[name]
    folder = root / source.folder
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise DataError(f"{existing}: is a file, so {folder} cannot be made; give a folder as --root")
    if not os.access(existing, os.W_OK):  # before any download: a server that is down would be blamed instead
        raise DataError(f"{existing}: not writable, so {folder} cannot be filled; give another --root")
    base = os.environ.get("MSTR_FETCH_BASE_URL")
    if base and urllib.parse.urlsplit(base).scheme not in ("http", "https", "file"):
        raise DataError(f"MSTR_FETCH_BASE_URL={base}: not an http(s):// or file:// URL; give the mirror's "
                        "address, e.g. http://127.0.0.1:8000")
    base = f"{base.rstrip('/')}/{name}" if base else source.base_url
    fetched: list[Path] = []
    try:
        lines = _fetch_files(source, folder, base, fetched)
    except (MstrError, KeyboardInterrupt) as err:
        # all or nothing, Ctrl-C too: the files fetched before the failure would leave a dataset the
        # loader reads as complete (8 of CIC-IDS2017's 16 classes, say)
        for path in fetched:
            path.unlink(missing_ok=True)
        if isinstance(err, KeyboardInterrupt):
            raise
        undone = f" (the {len(fetched)} file(s) fetched before it were removed)" if fetched else ""
        raise DataError(f"{err}{undone}") from None
    if source.manual:
        instructions = source.manual.format(folder=folder)
        if not source.files:
            found = sorted(folder.glob("*.csv*"))
            if not found:
                raise DataError(f"{name}: {instructions}")
            lines.append(f"present {len(found)} CSV file(s) in {folder} (no recorded sha256 to check)")
        else:
            lines.append(f"note: {instructions}")
    return lines


def _fetch_files(source, folder: Path, base: str, fetched: list[Path]) -> list[str]:
    """Each of `source`'s files not yet present and verified in `folder`, downloaded (or extracted) from
    `base`; the paths written are appended to `fetched` as they are."""
    lines = []
    for remote in source.files:
        wanted = remote.members or {remote.name: remote.sha256}
        present = {m: _present(folder, m, sha) for m, sha in wanted.items()}
        if all(present.values()):
            lines += [f"present {path} ({'sha256 verified' if wanted[m] else 'no recorded sha256'})"
                      for m, path in present.items()]
            continue
        url = f"{base}/{urllib.request.pathname2url(remote.name)}"
        if not remote.members:
            got = download(url, folder / remote.name, remote.sha256)
            fetched.append(folder / remote.name)
            lines.append(_saved(folder / remote.name, got, remote.sha256))
            continue
        archive = folder / f".{remote.name}.download"
        try:
            download(url, archive, remote.sha256)
            lines += _extract(archive, remote.members, folder, url, fetched)
        finally:
            with contextlib.suppress(OSError):  # the download's own error is the one to report
                archive.unlink(missing_ok=True)
    return lines


def _stop(signum: int, frame) -> None:
    raise KeyboardInterrupt(signum)  # as Ctrl-C (mstr.detect's convention): the fetch removes what it fetched


def main(argv: Optional[list[str]] = None) -> int:
    parser = ArgumentParser(prog="python -m mstr.data.fetch", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help=f"one of {sorted(DATASETS)}")
    parser.add_argument("--root", default=os.environ.get("MSTR_DATA_DIR", "data"),
                        help="data root (default: $MSTR_DATA_DIR or ./data)")
    args = parser.parse_args(argv)
    # SIGTERM (`timeout`, a scheduler) would end the process with no cleanup at all: a temporary file and
    # the files fetched before it left behind
    signal.signal(signal.SIGTERM, _stop)
    try:
        for line in fetch(args.name, Path(args.root).expanduser()):
            print(line)
    except MstrError as err:
        report_and_exit(err)
    except KeyboardInterrupt as stop:
        signum = stop.args[0] if stop.args else signal.SIGINT
        print(f"interrupted by {signal.Signals(signum).name}: nothing of this fetch was kept; run it again to "
              "fetch the dataset", file=sys.stderr, flush=True)
        sys.exit(128 + signum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
