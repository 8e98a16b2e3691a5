"""Forward hooks that collect intermediate outputs by module name (torchdistill-style), so the backbone
never needs to know it is being distilled."""

from __future__ import annotations

from torch import nn


class FeatureCollector:
    """Records the output of each named submodule on every forward pass into `self.outputs`."""

    def __init__(self, model: nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"no module(s) {missing} to hook; available: {[n for n in modules if n][:12]}...")
        self.names = list(names)
        self.outputs: dict = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def record(_module, _inputs, output):
            self.outputs[name] = output

        return record

    def __getitem__(self, name: str):
        return self.outputs[name]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def match_stages(student_stages: list[str], teacher_stages: list[str]) -> list[tuple[str, str]]:
    """Pair each student hook point with the teacher's at the nearest relative depth (deepest with deepest,
    and never deeper for a shallower student stage). A student stage shallower than the teacher's first
    (depth under half of it) takes that first stage: index -1 would have been the teacher's deepest."""
    s, t = len(student_stages), len(teacher_stages)
    return [(student_stages[k], teacher_stages[max(round((k + 1) * t / s), 1) - 1]) for k in range(s)]
