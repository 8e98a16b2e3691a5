"""Reading torch files without ever running code from them: `torch.load(weights_only=True)`, with
one-line errors. Imports no Lightning, so an entry point can check a file before any work starts."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from mstr.errors import DataError


def load_weights_only(path: str | Path) -> Any:
    """The file's content, refusing anything that needs arbitrary code to unpickle."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise DataError(f"{path}: not a torch checkpoint (not the zip archive torch.save writes; empty, "
                        "truncated or another kind of file); pass a .ckpt written by mstr")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsupported content"
        raise DataError(f"{path}: refused to load: the file holds objects that only a full unpickle could "
                        f"build ({first}); only load checkpoints you trust, written by mstr") from None
    except Exception as err:  # a zip that is not a torch file, or damaged inside
        raise DataError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
