"""Reading an offline W&B run file (`run-<id>.wandb`) in tests: the transaction log W&B writes (a
LevelDB-style log of 32 KiB blocks of records, each a protobuf `Record`). wandb >= 0.19 reads it in its
Go core only, so this is the small reader the tests need to see what a run would upload."""

from __future__ import annotations

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

_FILE_HEADER = struct.Struct("<4sHB")  # ":W&B", magic, version
_RECORD_HEADER = struct.Struct("<IHB")  # checksum, length, type (1 full, 2 first, 3 middle, 4 last)
_BLOCK = 32 * 1024


def records(path: Path) -> list:
    data = Path(path).read_bytes()
    ident, _, _ = _FILE_HEADER.unpack_from(data)
    assert ident == b":W&B", f"{path}: not a W&B run file"
    out, pos, chunks = [], _FILE_HEADER.size, b""
    while pos + _RECORD_HEADER.size <= len(data):
        if _BLOCK - pos % _BLOCK < _RECORD_HEADER.size:  # the block's tail is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = _RECORD_HEADER.unpack_from(data, pos)
        pos += _RECORD_HEADER.size
        if kind == 0:
            break
        chunks += data[pos:pos + length]
        pos += length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            out.append(record)
            chunks = b""
    return out


def run_contents(path: Path) -> dict:
    """{"group", "config" (key -> value), "summary" (key -> value), "artifacts" (names)} of a run file."""
    import json

    found: dict = {"group": None, "config": {}, "summary": {}, "artifacts": []}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found["group"] = record.run.run_group
            found["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            found["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            found["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                     for i in record.summary.update})
        elif kind == "artifact":
            found["artifacts"].append(record.artifact.name)
    return found
