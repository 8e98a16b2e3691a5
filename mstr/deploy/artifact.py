"""The artifact folder an export writes and a detector loads.

    model.onnx | model.ts     the network: ONNX (opset >= 17, dynamic batch axis) or TorchScript
    detector.json             what scoring needs besides the weights, as plain JSON: the fitted
                              preprocessing (feature order, scalers, category maps, bins), window
                              length, class names, decision threshold, the input format it reads
    manifest.json             format version, the model file and runtime, sha256 and size of each file

Loading checks every file against the manifest before anything is parsed, so a truncated copy or a
tampered file is refused with one line (`DataError`, exit 2) instead of scoring with wrong weights.
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

from mstr.errors import DataError

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


def write_artifact(folder: Path, runtime: str, model_file: Path, spec: dict[str, Any]) -> Path:
    """Move `model_file` and write the spec and manifest into `folder` (replacing an older artifact)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
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
    return Artifact(folder, runtime, folder / MODEL_FILES[runtime], _json(folder / SPEC))


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not readable JSON ({err}); export the artifact again") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object; export the artifact again")
    return value
