"""A job's results: `metrics.json` written atomically, and the final metrics table."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def write_json(path: Path, data: dict | list) -> None:
    """Write via a temporary file and rename, so a killed run never leaves half a metrics file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
        os.replace(tmp, path)
    except BaseException:  # a full disk: no half file beside the whole one (or in place of none)
        tmp.unlink(missing_ok=True)
        raise


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def print_table(metrics: dict, title: str, path: Path | None = None) -> None:
    """The metrics on the terminal, then the file they are in (`path`) on a line of its own, whole, to
    copy or grep; `audit/...` entries stay in metrics.json (the DataModule logs the leakage audit as
    its own line)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    keys = sorted(k for k in metrics if not k.startswith("audit/"))
    # folded, never cut with an ellipsis: a path or a long metric name must stay readable in a narrow
    # terminal or a log file (rich assumes 80 columns where there is no terminal); names whole where
    # they fit, so that a long path value folds instead of the name beside it
    console = Console()
    name_width = min(max(map(len, keys), default=6), 48)
    table.add_column("metric", overflow="fold", min_width=name_width)
    # the rest of the line, less the 3 borders and the 2 cells' padding
    table.add_column("value", justify="right", overflow="fold", max_width=max(console.width - name_width - 7, 12))
    for key in keys:
        value = metrics[key]
        if isinstance(value, float):
            text = f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e6 else f"{value:.4g}"
        else:
            text = str(value)
        table.add_row(key, text)
    console.print(table)
    if path is not None:
        print(f"-> {path}", flush=True)
