"""What every benchmark table carries: the command that made it and the machine it ran on."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} CPU cores ({cpu}), Python {platform.python_version()}"


def write_report(out: Path, name: str, body: str) -> None:
    """Print the table and write it to `<out>/<name>.md`, headed by its command."""
    command = "python -m mstr.bench " + " ".join(sys.argv[1:])
    text = f"# mstr benchmark: {name}\n\n`{command}`\n\n{body}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text)
    print(text)
