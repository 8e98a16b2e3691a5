"""What every benchmark table carries: the command that made it and the machine it ran on."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from mstr.errors import MstrError


# Other work on the machine when the benchmark started (the one-minute load average, before the benchmark
# loads the cores itself): shared boxes slow every timing, so a table says what it ran beside.
LOAD_AT_START = os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = "" if LOAD_AT_START is None else f", load average {LOAD_AT_START:.1f} at the start"
    return f"{_cores()} CPU cores ({cpu}), Python {platform.python_version()}{load}"


def busy_warning() -> str:
    """A line for a table made beside other work (load at the start above half the cores), else ""."""
    if LOAD_AT_START is None or LOAD_AT_START <= 0.5 * _cores():
        return ""
    return (f"**The machine was busy when this ran** (load average {LOAD_AT_START:.1f} on {_cores()} cores): its "
            "timings are slowed, unevenly; compare ratios within this table, or run it again on a quiet machine.\n\n")


def check_out(out: Path) -> None:
    """Refuse an `--out` that cannot be written before any work: the report is written at the end, after
    minutes or hours of it."""
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise MstrError(f"--out {out}: {existing} is not a writable folder; give another --out")


def write_report(out: Path, name: str, body: str, argv: list[str] | None = None) -> None:
    """Print the table and write it to `<out>/<name>.md`, headed by its command (and by a warning when
    the machine was busy), then say where it went."""
    command = "python -m mstr.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    text = f"# mstr benchmark: {name}\n\n`{command}`\n\n{busy_warning()}{body}"
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.md.tmp{os.getpid()}"  # renamed once whole: Ctrl-C mid-write leaves no half report
    tmp.write_text(text)
    os.replace(tmp, out / f"{name}.md")
    print(text)
    print(f"wrote {out / f'{name}.md'}", file=sys.stderr)
