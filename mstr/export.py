"""`python -m mstr.export ckpt_path=PATH format=onnx|torchscript [out=DIR] [threshold=T]`: write one
self-contained detector artifact folder (model, preprocessing JSON, manifest with sha256 checksums;
see `mstr.deploy.artifact`) after checking, on real windows, that it scores like the PyTorch model.
Score with it: `python -m mstr.detect --model DIR --input flows.log`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from mstr.cli import hydra_entry
from mstr.config import register_resolvers
from mstr.errors import ConfigError
from mstr.deploy.artifact import check_destination
from mstr.jobs.rundir import given_checkpoint

log = logging.getLogger("mstr.export")
register_resolvers()


def check(cfg: DictConfig) -> Path:
    """The export's own values, before Hydra makes a run dir and before the checkpoint is read; the
    checkpoint file."""
    ckpt = given_checkpoint(cfg.get("ckpt_path"))
    number = (int, float)
    checks = {
        "threshold": (lambda v: isinstance(v, number) and 0 < v < 1, "a number in (0, 1)"),
        "parity_windows": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
        "parity_tolerance": (lambda v: isinstance(v, number) and v > 0, "a number > 0 (e.g. 1e-4)"),
        "threads": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    }
    for key, (ok, expected) in checks.items():
        value = cfg.get(key)
        if isinstance(value, bool) or not ok(value):
            raise ConfigError(f"{key}={value!r}: must be {expected}")
    if cfg.get("out"):
        check_destination(Path(str(cfg.out)))
    return ckpt


def _check_command_line(argv: list[str], cfg) -> list[str]:
    if cfg is not None:  # None for --help and the like
        check(cfg)
    return argv


def run(cfg: DictConfig) -> dict:
    ckpt = check(cfg)
    from mstr.training.export import export_artifact

    out = Path(cfg.out) if cfg.get("out") else Path(cfg.paths.output_dir) / "artifact"
    report = export_artifact(str(ckpt), str(cfg.format), out, cfg, float(cfg.threshold), int(cfg.parity_windows),
                             float(cfg.parity_tolerance), int(cfg.threads))
    print(f"artifact: {out}")  # the parity check's figures are in the log line above and export.json
    (Path(cfg.paths.output_dir) / "export.json").write_text(json.dumps({"artifact": str(out), **report}, indent=1))
    return report


main = hydra_entry("export", run, prepare=_check_command_line)  # bad values: nothing written


if __name__ == "__main__":
    main()
