"""The artifact folder an export writes and a detector loads.

    model.onnx | model.ts     the network: ONNX (opset >= 17, dynamic batch axis) or TorchScript
    detector.json             what scoring needs besides the weights, as plain JSON: the fitted
                              preprocessing (feature order, scalers, category maps, bins), window
                              length, class names, decision threshold, the input format it reads
    manifest.json             format version, the model file and runtime, sha256 and size of each file

Loading checks every file against the manifest before anything is parsed, so a truncated copy or a
tampered file is refused with one line (`DataError`, exit 2) instead of scoring with wrong weights; then
the values of detector.json that a detector reads (`check_spec`), so a hand-edited spec whose manifest
was re-hashed is refused with one line too.
An artifact is written into a temporary sibling folder and renamed into place: never half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mstr.deploy.features import FeatureEncoder
from mstr.deploy.sources import LINE_FORMATS
from mstr.errors import DataError
from mstr.options import SCALERS

ARTIFACT_FORMAT = 1
MANIFEST, SPEC = "manifest.json", "detector.json"
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.ts"}


@dataclass
class Artifact:
    folder: Path
    runtime: str  # onnx | torchscript
    model_path: Path
    spec: dict[str, Any]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_destination(folder: Path) -> None:
    """An artifact may be written to a new or empty folder, or over an older artifact, but never over
    anything else: an `out=` naming a run dir or the current folder must not delete what it holds."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DataError(f"out={folder}: is a file, not an artifact folder; give another out=")
    own = {MANIFEST, SPEC, *MODEL_FILES.values()}
    others = sorted(p.name for p in folder.iterdir() if p.name not in own)
    if others or (any(folder.iterdir()) and not is_artifact(folder)):
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise DataError(f"out={folder}: holds files that are not an mstr artifact's ({shown or 'no manifest.json'}), "
                        "and writing the artifact there would delete them; give a new or empty folder, or an "
                        "artifact folder to replace")


def write_artifact(folder: Path, runtime: str, model_file: Path, spec: dict[str, Any]) -> Path:
    """Move `model_file` and write the spec and manifest into `folder` (replacing an older artifact)."""
    folder = Path(folder)
    check_destination(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as err:
        raise DataError(f"{folder}: cannot write the artifact there ({err.strerror or err}); give another out=") from None
    try:
        shutil.move(str(model_file), staging / MODEL_FILES[runtime])
        (staging / SPEC).write_text(json.dumps(spec, indent=1))
        files = [MODEL_FILES[runtime], SPEC]
        manifest = {"artifact_format": ARTIFACT_FORMAT, "runtime": runtime, "model": MODEL_FILES[runtime],
                    "files": {name: {"sha256": sha256(staging / name), "bytes": (staging / name).stat().st_size}
                              for name in files}}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the artifact is an ordinary folder
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def is_artifact(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def load_artifact(folder: str | os.PathLike) -> Artifact:
    """The verified artifact in `folder`; a missing, truncated or altered file is a `DataError`."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"{folder}: not an mstr artifact (no {MANIFEST}); export one with "
                        "python -m mstr.export ckpt_path=... format=onnx")
    manifest = _json(manifest_path)
    version = manifest.get("artifact_format")
    if not isinstance(version, int) or version > ARTIFACT_FORMAT:
        raise DataError(f"{manifest_path}: artifact format {version!r} is not one this mstr reads "
                        f"(v{ARTIFACT_FORMAT}); export it again or upgrade mstr")
    runtime, files = manifest.get("runtime"), manifest.get("files")
    if runtime not in MODEL_FILES or not isinstance(files, dict) or set(files) != {MODEL_FILES[runtime], SPEC}:
        raise DataError(f"{manifest_path}: damaged manifest (runtime {runtime!r}, files {files!r}); export again")
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing from the artifact; copy the whole folder or export again")
        size = path.stat().st_size
        if size != expected.get("bytes"):
            raise DataError(f"{path}: {size:,} bytes where the manifest says {expected.get('bytes')!r} "
                            "(truncated or altered copy); copy the artifact again or export again")
        if sha256(path) != expected.get("sha256"):
            raise DataError(f"{path}: sha256 differs from the manifest (the file was altered); refusing to "
                            "load it: copy the artifact again or export again")
    return Artifact(folder, runtime, folder / MODEL_FILES[runtime], check_spec(folder / SPEC, _json(folder / SPEC)))


def check_spec(path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` if the keys a detector reads are there with usable types and ranges; else a `DataError`
    naming the key, instead of a traceback (or silently wrong verdicts) once scoring starts. Whether the
    model takes windows of `window` x `num_features` is checked by a dry run (`runtime.artifact_scorer`)."""
    def refuse(key: str, what: str) -> DataError:
        return DataError(f"{path}: {key} {what}; export the artifact again")

    missing = [k for k in ("input", "preprocessor", "classes", "benign", "window", "threshold", "num_features")
               if k not in spec]
    if missing:
        raise refuse(f"key(s) {missing}", "missing")
    classes, benign, source = spec["classes"], spec["benign"], spec["input"]
    if not _strings(classes) or len(set(classes)) != len(classes) or len(classes) < 2:
        raise refuse("classes", f"= {classes!r}: must be a list of at least 2 distinct class names")
    if not _strings(benign) or not set(benign) < set(classes):
        raise refuse("benign", f"= {benign!r}: must be a list of some (not all) of the classes {classes}")
    if not _integer(spec["window"]) or spec["window"] < 1:
        raise refuse("window", f"= {spec['window']!r}: must be a whole number >= 1")
    threshold = spec["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise refuse("threshold", f"= {threshold!r}: must be a number in (0, 1), as at export")
    if not isinstance(source, dict) or source.get("format") not in LINE_FORMATS:
        raise refuse("input.format", f"= {source.get('format') if isinstance(source, dict) else source!r}: "
                                     f"must be one of {list(LINE_FORMATS)}")
    for key in ("time_col", "group_col"):
        if not isinstance(source.get(key) or "", str):
            raise refuse(f"input.{key}", f"= {source.get(key)!r}: must be a column name")
    delimiter = source.get("delimiter") or ","
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise refuse("input.delimiter", f"= {delimiter!r}: must be one character")
    if not _strings(source.get("columns") or []) or not isinstance(source.get("aliases") or {}, dict):
        raise refuse("input.columns / input.aliases", "are not a list of names / a {name: name} map")
    try:
        encoder = FeatureEncoder(spec["preprocessor"])
        layout = (len(encoder.numeric_cols) + len(encoder.bin_cols) + len(encoder.frequent_cols)
                  + sum(len(v) + 1 for v in encoder.vocab))
        sizes = {encoder.center.shape, encoder.scale.shape, (len(encoder.numeric_cols),)}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise refuse("preprocessor", f"is damaged ({type(err).__name__}: {err})") from None
    if layout != encoder.num_features or len(sizes) != 1:
        raise refuse("preprocessor", f"is inconsistent (its columns make {layout} features, its feature_names "
                                     f"{encoder.num_features}, its scalers {sorted(sizes)})")
    try:
        _check_column_names(spec["preprocessor"], refuse)
    except (KeyError, TypeError) as err:
        raise refuse("preprocessor", f"is damaged ({type(err).__name__}: {err})") from None
    values = {"preprocessor.center": encoder.center, "preprocessor.scale": encoder.scale,
              "preprocessor.clip": np.array([encoder.clip]), "preprocessor.fill": encoder.fill,
              "preprocessor.bin_edges": encoder.bin_width, "preprocessor.frequent_values": encoder.frequent_values}
    for key, array in values.items():
        if array is not None and not np.isfinite(array).all():
            raise refuse(key, "holds a value that is not a finite number")
    for key, what in (("preprocessor.scale", "holds a scale <= 0"), ("preprocessor.clip", "is <= 0"),
                      ("preprocessor.bin_edges", "holds edges that do not rise")):
        if (values[key] <= 0).any():
            raise refuse(key, what)
    if not _integer(spec["num_features"]) or spec["num_features"] != encoder.num_features:
        raise refuse("num_features", f"= {spec['num_features']!r} where the preprocessor makes "
                                     f"{encoder.num_features} features")
    return spec


def _check_column_names(prep: dict[str, Any], refuse) -> None:
    """The preprocessor's column lists agree with its feature names (numeric columns first, in order)
    and with each other, so an edited list cannot feed a column's value into another column's place,
    which the counts alone would pass."""
    numeric, categorical, names = prep["numeric_cols"], prep["categorical_cols"], prep["feature_names"]
    if list(names[:len(numeric)]) != list(numeric):
        raise refuse("preprocessor.numeric_cols", "do not match the first feature_names, in order")
    if not set(prep["log_cols"]) <= set(numeric):
        raise refuse("preprocessor.log_cols", f"name column(s) {sorted(set(prep['log_cols']) - set(numeric))} "
                                              "that are not numeric_cols")
    order = prep.get("column_order") or []
    if order and sorted(order) != sorted([*numeric, *categorical]):
        raise refuse("preprocessor.column_order", "is not an order of the numeric and categorical columns")
    if prep.get("scaler") not in SCALERS:
        raise refuse("preprocessor.scaler", f"= {prep.get('scaler')!r}: must be one of {list(SCALERS)}")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not readable JSON ({err}); export the artifact again") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object; export the artifact again")
    return value
