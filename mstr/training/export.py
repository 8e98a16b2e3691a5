"""From a checkpoint to a deployable detector: the artifact spec, ONNX / TorchScript export, parity.

The spec (`detector.json` of an artifact, see `mstr.deploy.artifact`) holds everything scoring needs
besides the weights. Most of it travels in the checkpoint (fitted preprocessing, classes, backbone);
what a checkpoint does not know is the input its data config reads (format, header spellings, the
time and group columns that order windows): that comes from the data config, by default the one of
the checkpoint's own run (`<run>/.hydra/config.yaml`, beside `<run>/checkpoints/`).

Parity: the exported model is run against the PyTorch model on real windows of that data (its test
split), and the numpy feature encoder of `mstr.deploy` against `FlowPreprocessor.transform` on the
same rows; an export whose outputs differ by more than the tolerance is refused and nothing is written.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mstr.data.table import FlowTable
from mstr.errors import ConfigError, DataError
from mstr.models.batch_last import BatchLastWindowOne
from mstr.models.newest_flow import NewestFlowOnly

log = logging.getLogger("mstr.export")
SPEC_FORMAT = 1
ONNX_OPSET = 17
EXPORT_FORMATS = ("onnx", "torchscript")


def run_config(ckpt: str | Path) -> Optional[DictConfig]:
    """The composed config of the run that wrote `<run>/checkpoints/<name>.ckpt` (or of the run dir
    `ckpt`; for its teacher, `<run>/teacher/checkpoints/...`, the run's), if it is there."""
    run_dir = Path(ckpt).resolve() if Path(ckpt).is_dir() else Path(ckpt).resolve().parent.parent
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file() and run_dir.name == "teacher":  # <run>/teacher: trained on the way, on its run's data
        path = run_dir.parent / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # YAML errors of several kinds, a file that is not text: as if it were not there
        log.warning("%s: cannot be read (%s: %s)", path, type(err).__name__, " ".join(str(err).split())[:120])
        return None
    return cfg if isinstance(cfg, DictConfig) and "data" in cfg else None


def trained_on(run: str | Path, data_dir: Optional[str], seed: Optional[int] = None,
               data_dir_given: bool = False) -> Optional[DictConfig]:
    """The config of the run at `run` (its dir, or a checkpoint in it), reading its data where the run
    did, or from `data_dir` (None: always the run's) where that folder is gone (another machine) or where the command line said
    so (`data_dir_given`), and, with `seed`, carving with it; its `.data` is the data config the run
    trained on, its `.seed` the seed. None when the run's config is not there."""
    trained_with = run_config(run)
    if trained_with is None:
        return None
    try:
        own = OmegaConf.select(trained_with, "paths.data_dir", throw_on_resolution_failure=True)
    except Exception:  # an interpolation that does not resolve here
        own = None
    if data_dir is not None and (data_dir_given or not (own and Path(str(own)).expanduser().is_dir())):
        OmegaConf.update(trained_with, "paths.data_dir", data_dir, force_add=True)
    if seed is not None:
        OmegaConf.update(trained_with, "seed", seed, force_add=True)
    # data=flows names its files relative to where the run was started (Hydra records it in hydra.yaml):
    # read them there, not relative to wherever this command runs
    started_in = _started_in(run)
    for key in ("data.path", "data.test_path"):
        value = OmegaConf.select(trained_with, key, default=None)
        if started_in and isinstance(value, str) and not Path(value).expanduser().is_absolute():
            OmegaConf.update(trained_with, key, str(Path(started_in) / value))
    return trained_with


def _started_in(run: str | Path) -> Optional[str]:
    """The folder the run was started in (`hydra.runtime.cwd` in `<run>/.hydra/hydra.yaml`), if recorded."""
    run_dir = Path(run).resolve() if Path(run).is_dir() else Path(run).resolve().parent.parent
    for folder in (run_dir, run_dir.parent) if run_dir.name == "teacher" else (run_dir,):  # <run>/teacher: its run's
        try:
            return str(OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra.runtime.cwd)
        except Exception:  # not there, or not the file Hydra writes
            continue
    return None


def input_spec(data_cfg: DictConfig, columns: dict[str, Optional[str]]) -> dict[str, Any]:
    """How the detector reads flows: the format the data config read, with its column spellings
    (`columns`: the training table's time and group columns and the format it was read as)."""
    from mstr.data.datasets.flows import PRESETS
    from mstr.data.readers import typed_delimiter

    name = str(data_cfg.get("name"))
    # The NSL-KDD and UNSW-NB15 loaders keep every category text as the file has it (UNSW-NB15's service
    # "-" is a category of its own); the flow-log readers read missing tokens in them as "".
    spec: dict[str, Any] = {"format": "csv", "columns": None, "aliases": {}, "delimiter": None,
                            "time_col": columns["time_col"], "group_col": columns["group_col"],
                            "clean_categories": name not in ("nsl_kdd", "unsw_nb15")}
    if name == "nsl_kdd":
        from mstr.data.datasets.nsl_kdd import FEATURES

        spec.update(format="nsl_kdd", columns=[*FEATURES, "label", "difficulty"])
    elif name == "cic_ids2017":
        spec.update(format="cicflowmeter", aliases=dict(PRESETS["cicflowmeter"].aliases))
    elif name == "flows":
        preset = columns["read_as"] or "generic"
        # generic columns, and Zeek's in a table (a conn.log saved as CSV): the delimiter of the files trained
        # on (parquet's columns arrive as CSV lines)
        tsv = data_cfg.get("format") == "tsv" or columns.get("file_format") == "tsv"
        table = preset == "generic" or (preset == "zeek" and columns.get("file_format") not in (None, "zeek"))
        fmt = ("tsv" if tsv else "csv") if table else preset
        # a preset's columns in a TSV file (CICFlowMeter's, tab-separated) keep the tab
        delimiter = typed_delimiter(data_cfg.get("delimiter")) or ("\t" if tsv else None)
        spec.update(format=fmt, aliases=dict(PRESETS[preset].aliases), delimiter=delimiter)
    return spec


def detector_spec(hparams: dict, data_cfg: DictConfig, columns: dict[str, Optional[str]],
                  threshold: float) -> dict[str, Any]:
    prep = hparams["preprocessor"]
    signature = hparams.get("data_signature") or {}
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold={threshold}: must be in (0, 1)")
    return {
        "spec_format": SPEC_FORMAT,
        "role": hparams.get("role", "model"),
        "backbone": hparams.get("backbone"),
        "num_features": len(prep["feature_names"]),
        "classes": list(prep["classes"]),
        "benign": list(prep["benign"]),
        "window": int(signature.get("window", 1)),
        "threshold": float(threshold),
        "data": str(data_cfg.get("name")),
        "task": str(data_cfg.get("task")),
        "input": input_spec(data_cfg, columns),
        "preprocessor": prep,
        "data_signature": signature,
    }


def setup_data(ckpt: str | Path, run_cfg: Optional[DictConfig], fallback_cfg: Optional[DictConfig],
               preprocessor: Optional[dict] = None):
    """(data config, set-up DataModule) from the data section of the checkpoint's run's config
    `run_cfg` (`run_config`), else of `fallback_cfg` (a composed config); with the checkpoint's fitted
    `preprocessor` (its columns, bins and scalers, whatever the config says)."""
    from hydra.utils import instantiate

    from mstr.data.preprocessing import FlowPreprocessor

    if run_cfg is None:
        if fallback_cfg is None:
            raise DataError(f"{ckpt}: no readable run config with a data section beside it (<run>/.hydra/"
                            "config.yaml), so the input it reads is unknown; export it with python -m mstr.export "
                            "ckpt_path=... data=<its data config>")
        cfg = fallback_cfg
    else:
        log.info("data config of the checkpoint's run: data=%s", run_cfg.data.get("name"))
        cfg = run_cfg
    if preprocessor is None:
        dm = instantiate(cfg.data)
    else:
        dm = instantiate(cfg.data, _partial_=True)(preprocessor=FlowPreprocessor.from_dict(preprocessor))
    try:
        dm.setup()
    except DataError as err:
        if run_cfg is not None:
            raise
        raise DataError(f"{err} (no run config beside {ckpt}, so data={cfg.data.get('name')} was used: "
                        "give the data config the model was trained with, e.g. data=nsl_kdd)") from None
    return cfg.data, dm


def checkpoint_detector(ckpt: str | Path, fallback_cfg: Optional[DictConfig] = None, threshold: float = 0.5,
                        need_data: bool = True):
    """(backbone module in eval mode, spec, set-up DataModule) for scoring with PyTorch directly.
    Without `need_data` (a detector that only scores its input), the data is not read where the
    checkpoint holds what the spec needs of it (its input columns; checkpoints since 2026-12-07) and
    its run's data config is beside it; the DataModule is then None."""
    from mstr.training.checkpoint import load_classifier
    from mstr.training.signature import check_signature

    classifier = load_classifier(ckpt)
    hp = dict(classifier.hparams)
    if not hp.get("preprocessor"):
        raise DataError(f"{ckpt}: holds no fitted preprocessing; retrain it with this mstr")
    # its data where the run read it: a data=flows path relative to where the run was started
    run_cfg = trained_on(ckpt, OmegaConf.select(fallback_cfg, "paths.data_dir") if fallback_cfg is not None else None)
    if not need_data and hp.get("input_columns") and run_cfg is not None:
        return classifier.model.eval(), detector_spec(hp, run_cfg.data, hp["input_columns"], threshold), None
    try:
        data, dm = setup_data(ckpt, run_cfg, fallback_cfg, hp["preprocessor"])
    except DataError as err:
        if need_data or hp.get("input_columns"):
            raise
        raise DataError(f"{err} ({ckpt} is older than the checkpoints that keep their input columns, so its "
                        "training data is read to find them: export an artifact where that data is)") from None
    check_signature(ckpt, hp.get("data_signature") or {}, dm.signature(), keys=("classes", "window"))
    return classifier.model.eval(), detector_spec(hp, data, dm.input_columns(), threshold), dm


def export_model(model: torch.nn.Module, fmt: str, example: torch.Tensor, path: Path) -> None:
    """ONNX (opset 17, dynamic batch axis) or traced TorchScript of `model` at `path`."""
    model = model.eval()
    model = BatchLastWindowOne.of(model) if fmt == "onnx" else model
    model = NewestFlowOnly.of(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' notes on constant folding and tracing
        if fmt == "onnx":
            import onnx

            torch.onnx.export(model, (example,), str(path), input_names=["windows"], output_names=["logits"],
                              dynamic_axes={"windows": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=ONNX_OPSET, dynamo=False)
            prepare_graph(path, batch_axis=3 if isinstance(model, BatchLastWindowOne) else 0)
            onnx.checker.check_model(str(path), full_check=True)
        else:
            traced = torch.jit.trace(model, example, check_trace=False)
            torch.jit.save(torch.jit.freeze(traced), str(path))


def prepare_graph(path: Path, batch_axis: int) -> None:
    """Two edits of the exported ONNX graph at `path` (plain ONNX, same numbers) that let ONNX Runtime
    apply fusions it otherwise skips.

    - Every 4-D map's batch axis is declared `batch` (`value_info`). ONNX Runtime fuses a convolution
      with the residual Add and the ReLU after it (one pass over the map instead of three) only where
      it can prove that the Add's two inputs have the same shape, and shape inference gives every Conv
      and Reshape output a fresh unknown batch size. `batch_axis`: where the batch lies in the maps (3
      in the batch-last graph of windows of one flow, `mstr/models/batch_last.py`; 0 otherwise).
    - A Pad loses its empty last input (torch writes the absent constant value so). ONNX Runtime folds a
      zero Pad into the convolution that reads it only when every input the Pad lists is a constant,
      and an empty name is not one: the causal time branches' padding copied the whole map.
    """
    import onnx

    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    named = []
    for info in inferred:
        dims = info.type.tensor_type.shape.dim
        # a map: unknown along the batch axis only (weights built in the graph are known throughout)
        if len(dims) == 4 and all(d.HasField("dim_value") == (i != batch_axis) for i, d in enumerate(dims)):
            shape = [d.dim_value for d in dims]
            shape[batch_axis] = "batch"
            named.append(onnx.helper.make_tensor_value_info(info.name, info.type.tensor_type.elem_type, shape))
    model.graph.ClearField("value_info")
    model.graph.value_info.extend(named)
    for node in model.graph.node:
        while node.op_type == "Pad" and node.input[-1] == "":
            del node.input[-1]
    onnx.save(model, str(path))


def parity_windows(dm, count: int) -> tuple[np.ndarray, FlowTable]:
    """Up to `count` real windows (the first test set, from its start) and that table's rows."""
    key = f"test_{dm.test_names[0]}"
    dataset = dm.dataset(key)
    idx = torch.arange(min(count, len(dataset)))
    x, _ = dataset.gather(idx)
    return x.numpy(), dm.tables[key].take(idx.numpy())


def encoder_difference(spec: dict, table: FlowTable) -> float:
    """Max |deploy encoder - FlowPreprocessor.transform| on the raw values of `table`'s rows."""
    from mstr.data.preprocessing import FlowPreprocessor
    from mstr.deploy.features import FeatureEncoder, category, cleans_categories, repair

    encoder = FeatureEncoder(spec["preprocessor"])
    # as the detector's sources hand them over: infinities and gaps to be filled, huge values clipped
    numeric, _ = repair(table.frame[encoder.numeric_cols].to_numpy(dtype=np.float64))
    clean = cleans_categories(spec["input"])
    texts = table.frame[encoder.categorical_cols].astype(str).itertuples(index=False)
    cats = [[category(v, clean) for v in row] for row in texts]
    expected = FlowPreprocessor.from_dict(spec["preprocessor"]).transform(table)
    return float(np.abs(encoder.encode(numeric, cats) - expected).max())


def export_artifact(ckpt: str | Path, fmt: str, out: Path, fallback_cfg: Optional[DictConfig] = None,
                    threshold: float = 0.5, parity_count: int = 2048, tolerance: float = 1e-4,
                    threads: int = 1) -> dict[str, Any]:
    """Write the artifact to `out` after both parity checks pass; returns the parity report. The data is
    the checkpoint's run's, else that of `fallback_cfg` (a composed config)."""
    from mstr.deploy.artifact import MODEL_FILES, load_artifact, write_artifact
    from mstr.deploy.runtime import artifact_scorer, onnx_scorer, torch_scorer, torchscript_scorer

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"format={fmt!r}: must be one of {list(EXPORT_FORMATS)}")
    model, spec, dm = checkpoint_detector(ckpt, fallback_cfg, threshold)
    windows, rows = parity_windows(dm, parity_count)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILES[fmt]
        export_model(model, fmt, torch.from_numpy(windows[:2]), path)
        exported = (onnx_scorer if fmt == "onnx" else torchscript_scorer)(path, threads)(windows)
        reference = torch_scorer(model, threads)(windows)
        report = {"parity/windows": len(windows), "parity/max_abs_diff_probs": float(np.abs(exported - reference).max()),
                  "parity/max_abs_diff_features": encoder_difference(spec, rows), "parity/tolerance": tolerance}
        log.info("parity on %d real windows: max |exported - pytorch| = %.3g (probabilities), %.3g (features); "
                 "tolerance %g", len(windows), report["parity/max_abs_diff_probs"],
                 report["parity/max_abs_diff_features"], tolerance)
        if report["parity/max_abs_diff_probs"] > tolerance or report["parity/max_abs_diff_features"] > tolerance:
            raise DataError(f"{ckpt}: exported detector differs from PyTorch by "
                            f"{report['parity/max_abs_diff_probs']:.3g} (probabilities) / "
                            f"{report['parity/max_abs_diff_features']:.3g} (features), over the tolerance "
                            f"{tolerance}; nothing written (report this with the checkpoint)")
        spec["parity"] = report
        spec["source_checkpoint"] = str(Path(ckpt).resolve())
        folder = write_artifact(out, fmt, path, spec)
    # The verified files give the same scores. The same batch too: batch-last products may round a
    # flow's score differently (~1e-7) in a batch of another size.
    reloaded = artifact_scorer(load_artifact(folder), threads)(windows)
    if not np.array_equal(reloaded, exported):
        raise DataError(f"{folder}: the written artifact scores differently from the exported model; export again")
    return report
