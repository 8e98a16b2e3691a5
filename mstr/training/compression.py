"""Compression report of a distilled run: what the student saves against its teacher, and what it costs.

Sizes are of the weights alone (a state dict serialised as torch saves it), so optimiser state and
training bookkeeping in checkpoint files do not blur the comparison. Latency is the median wall time
of one window on the CPU (one thread, as a per-flow inline detector runs), throughput the windows per
second at a large batch with all threads; both after warm-up, measured back to back for teacher and
student so that machine noise hits both alike. Whatever device trained the models (a GPU, DDP ranks),
each is measured on the CPU and then put back where it was, in the mode it was in (`on_cpu`).
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from typing import Iterator

import torch
from torch import nn



@contextlib.contextmanager
def on_cpu(model: nn.Module) -> Iterator[nn.Module]:
    """The model on the CPU in eval mode for the duration; afterwards back on its device and mode. A
    student trained on a GPU (or a teacher the distillation moved there) is reported like one
    trained on the CPU, and the caller's model is left as it was."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    was_training = model.training
    try:
        yield model.cpu().eval()
    finally:
        model.to(device).train(was_training)


def weights_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def cpu_latency_ms(model: nn.Module, window: int, repeats: int = 200) -> float:
    """Median ms per window of a model on the CPU in eval mode (see `on_cpu`)."""
    x = torch.randn(1, window, model.num_features)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(20):
            model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return 1000.0 * statistics.median(times)


@torch.no_grad()
def cpu_throughput(model: nn.Module, window: int, batch: int = 1024, min_seconds: float = 1.0) -> float:
    """Windows per second over as many batches as fit in `min_seconds` (at least two), like timeit's
    autorange: a big teacher on a busy machine costs a second or two, not a fixed pile of batches."""
    x = torch.randn(batch, window, model.num_features)
    model(x)
    repeats, start = 0, time.perf_counter()
    while repeats < 2 or time.perf_counter() - start < min_seconds:
        model(x)
        repeats += 1
    return batch * repeats / (time.perf_counter() - start)


def compression_metrics(teacher: nn.Module, student: nn.Module, window: int, metrics: dict) -> dict[str, float]:
    """The report for a distilled run's flat metrics (`teacher/test/...` vs `test/...`). Timings
    (latency, throughput, speedups) vary between machines and runs, so they go under
    `time/compression/...` like every other timing."""
    teacher_metrics = {k[len("teacher/"):]: v for k, v in metrics.items() if k.startswith("teacher/test/")}
    report = compression_report(teacher, student, window, teacher_metrics, metrics)
    timed = ("latency", "throughput", "speedup")
    return {(f"time/{k}" if any(t in k for t in timed) else k): v for k, v in report.items()}


def compression_report(teacher: nn.Module, student: nn.Module, window: int,
                       teacher_metrics: dict, student_metrics: dict) -> dict[str, float]:
    """Flat `compression/...` entries for metrics.json (teacher_metrics/student_metrics: `test/...`).

    A tree teacher has no weights or MACs: its size is reported in trees and nodes, and only the
    timings and accuracy deltas are compared."""
    report: dict[str, float] = {}
    for role, trained in (("teacher", teacher), ("student", student)):
        with on_cpu(trained) as model:
            for key, value in model.cost(window).items():
                report[f"compression/{role}_{key}"] = value
            if any(True for _ in model.parameters()):
                report[f"compression/{role}_weights_bytes"] = weights_bytes(model)
            report[f"compression/{role}_latency_ms"] = cpu_latency_ms(model, window)
            report[f"compression/{role}_throughput_wps"] = cpu_throughput(model, window)
    for key in ("params", "macs", "weights_bytes"):
        if f"compression/teacher_{key}" in report:
            report[f"compression/{key}_ratio"] = (report[f"compression/teacher_{key}"]
                                                  / max(report[f"compression/student_{key}"], 1))
    report["compression/speedup_latency"] = report["compression/teacher_latency_ms"] / report["compression/student_latency_ms"]
    report["compression/speedup_throughput"] = (report["compression/student_throughput_wps"]
                                                / report["compression/teacher_throughput_wps"])
    for name in ("acc", "f1", "specificity"):
        key = f"test/{name}"
        if key in teacher_metrics and key in student_metrics:
            report[f"compression/delta_{name}"] = student_metrics[key] - teacher_metrics[key]
    return report
