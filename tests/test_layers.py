"""The layering holds (docs: shared architecture notes, README "How it works"), read from the imports of
every module, those inside functions included; and the option names configs use are the code's."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
import yaml

from mstr import options
from mstr.config import config_dir

PACKAGE = Path(__file__).resolve().parents[1] / "mstr"
LIGHTNING = ("pytorch_lightning", "lightning")
LOGGERS = ("pytorch_lightning.loggers", "lightning.pytorch.loggers", "wandb", "tensorboard")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from mstr import train`
    return names


MODULES = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _entry_points() -> set[str]:
    """Console scripts and `python -m` targets: what runs a job, and what nothing may import."""
    scripts = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]["scripts"]
    named = {target.split(":")[0] for target in scripts.values()}
    main_modules = {m for m in MODULES if m.endswith(".__main__")}
    return named | main_modules


def _hits(imports: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(i for i in imports if any(i == p or i.startswith(p + ".") for p in prefixes))


def _in(package: str) -> dict[str, set[str]]:
    return {m: imports for m, imports in MODULES.items() if m == package or m.startswith(package + ".")}


def test_the_import_reader_sees_what_it_checks():
    assert {"mstr.train", "mstr.evaluate", "mstr.baselines", "mstr.sweep", "mstr.bench.__main__"} <= _entry_points()
    assert "torch" in MODULES["mstr.models.backbone"]
    assert "mstr.peers" in MODULES["mstr.bench.__main__"]  # an import inside a function counts too
    assert _hits({"pytorch_lightning.callbacks"}, LIGHTNING) == ["pytorch_lightning.callbacks"]
    assert _hits({"mstr.training_tools"}, ("mstr.training",)) == []  # a prefix only matches whole names


def test_models_are_plain_torch():
    allowed_mstr = ("mstr.models", "mstr.errors", "mstr.options")
    for module, imports in _in("mstr.models").items():
        mstr_imports = [i for i in imports if i.startswith("mstr")]
        assert all(_hits({i}, allowed_mstr) for i in mstr_imports), (module, mstr_imports)
        assert not _hits(imports, (*LIGHTNING, "hydra", "omegaconf", "wandb")), module


def test_data_never_imports_models_or_training():
    for module, imports in _in("mstr.data").items():
        assert not _hits(imports, ("mstr.models", "mstr.training", "mstr.jobs")), module


def test_nothing_imports_an_entry_point():
    entry_points = tuple(_entry_points())
    for module, imports in MODULES.items():
        others = tuple(e for e in entry_points if e != module)
        assert not _hits(imports, others), (module, _hits(imports, others))


def test_only_entry_points_and_jobs_know_loggers_and_hydra_run_dirs():
    allowed = tuple(_entry_points()) + ("mstr.jobs",)
    for module, imports in MODULES.items():
        if _hits({module}, allowed):
            continue
        assert not _hits(imports, (*LOGGERS, "hydra.core.hydra_config")), module


def test_deploy_loads_without_lightning_or_hydra():
    for module, imports in _in("mstr.deploy").items():
        assert not _hits(imports, (*LIGHTNING, "hydra", "omegaconf")), module


def _group(name: str) -> dict[str, dict]:
    folder = Path(config_dir()) / name
    return {p.stem: yaml.safe_load(p.read_text()) or {} for p in folder.glob("*.yaml") if not p.stem.startswith("_")}


@pytest.mark.parametrize("group, key, names", [
    ("distill", "method", ("none", *options.DISTILL_METHODS)),
    ("distill", "teacher", options.DISTILL_TEACHERS),
    ("distill", "augment", options.DISTILL_AUGMENTS),
    ("loss", "name", options.LOSSES),
    ("loss", "class_weights", options.CLASS_WEIGHTS),
])
def test_config_options_are_the_codes_names(group, key, names):
    configs = _group(group)
    values = {name: cfg.get(key) for name, cfg in configs.items() if key in cfg}
    assert values and all(v in names for v in values.values()), values


def test_defaults_in_configs_are_known_options():
    datamodule = yaml.safe_load((Path(config_dir()) / "data" / "_datamodule.yaml").read_text())
    assert datamodule["task"] in options.TASKS and datamodule["sampler"] in options.SAMPLERS
    assert datamodule["scaler"] in options.SCALERS and datamodule["column_order"] in options.COLUMN_ORDERS
    baselines = yaml.safe_load((Path(config_dir()) / "baselines.yaml").read_text())
    assert tuple(baselines["baselines"]["models"]) == options.PEERS
    assert {cfg.get("role") for cfg in _group("model").values()} <= set(options.ROLES)


def test_the_wheel_ships_every_package():
    packages = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert packages <= listed, sorted(packages - listed)
