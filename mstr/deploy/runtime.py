"""Scoring windows `[batch, window, features]` (float32) into class probabilities `[batch, classes]`.

One small interface for the three ways a detector runs: ONNX Runtime for an ONNX artifact,
torch.jit for a TorchScript artifact, and the eager PyTorch module of a checkpoint. Each is told how
many threads it may use, since an inline detector shares its machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from mstr.deploy.artifact import Artifact
from mstr.errors import DataError

Scorer = Callable[[np.ndarray], np.ndarray]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def onnx_session(path: Path, threads: int, optimized_path: Path | None = None):
    """An ONNX Runtime session on the CPU with `threads` threads (`optimized_path`: also write the graph
    it runs, for tests and profiling)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # All graph optimisations but the NCHWc layout: at a student's few channels its reorders around every
    # convolution cost more than they save (NSL-KDD student, batch 4096, 2 threads: 1.4x the flows/s
    # without it). The level that includes it also fuses a convolution with the residual Add and ReLU
    # after it, where the export named the batch axis (`mstr.training.export.prepare_graph`).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=["NchwcTransformer"])
    except Exception as err:  # onnxruntime raises its own exception types for a bad model
        raise DataError(f"{path}: ONNX Runtime cannot load the model ({type(err).__name__}: "
                        f"{' '.join(str(err).split())[:200]}); export it again") from None


def onnx_scorer(path: Path, threads: int = 1) -> Scorer:
    session = onnx_session(path, threads)
    name = session.get_inputs()[0].name

    def score(x: np.ndarray) -> np.ndarray:
        return softmax(session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0])

    return score


def torch_scorer(module, threads: int = 1) -> Scorer:
    """A torch module (eager or TorchScript) on the CPU, in eval mode, without gradients."""
    import torch

    torch.set_num_threads(threads)
    module = module.eval()

    def score(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).softmax(-1).numpy()

    return score


def torchscript_scorer(path: Path, threads: int = 1) -> Scorer:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # a damaged archive
        raise DataError(f"{path}: not a loadable TorchScript model ({type(err).__name__}); export it again") from None
    return torch_scorer(module, threads)


def artifact_scorer(artifact: Artifact, threads: int = 1) -> Scorer:
    """The artifact's model, after a dry run on one zero window: a spec whose window, num_features or
    classes do not fit the model is refused here with one line, not by the runtime at the first batch."""
    if artifact.runtime == "onnx":
        scorer = onnx_scorer(artifact.model_path, threads)
    else:
        scorer = torchscript_scorer(artifact.model_path, threads)
    spec = artifact.spec
    window, width, classes = spec["window"], spec["num_features"], len(spec["classes"])
    try:
        got = scorer(np.zeros((1, window, width), dtype=np.float32)).shape
    except Exception as err:  # each runtime raises its own types for a wrong input shape
        got = f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"
    if got != (1, classes):
        raise DataError(f"{artifact.folder / 'detector.json'}: the model does not score a window of window={window} "
                        f"x num_features={width} into {classes} classes (got {got}); export the artifact again")
    return scorer
