"""A forward that fails is reported once, although the paired passes and the ONNX export both
ran into it and word it a little differently."""
from __future__ import annotations

import torch

from evalguard import engine
from evalguard.loading import load_factory_subject
from evalguard.run_check import selected_rules
from evalguard.subject import AuditOptions


class Boom(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x):
        raise ValueError("boom in forward")


def make():
    return Boom()


def test_one_failing_forward_gives_one_error_message():
    options = AuditOptions(selected=selected_rules([], []), model_factory=f"{__name__}:make",
                           input_shapes=((2, 4),), onnx_enabled=True)
    subject = load_factory_subject(options)
    result, _ = engine.audit_subject(subject, options, {})
    assert result.status == "error"
    assert result.detail.count("boom in forward") == 1, result.detail
    assert result.detail.startswith("forward failed on the example inputs (arg0: float32[2, 4]")


def test_different_failures_are_all_kept():
    errors: list[str] = []
    engine._add_error(errors, "forward failed on the example inputs (x: float32[2]): ValueError: a", "m.pt")
    engine._add_error(errors, "m.pt: forward failed on the example inputs: ValueError: a", "m.pt")
    engine._add_error(errors, "m.pt: export failed: ValueError: b", "m.pt")
    assert errors == ["forward failed on the example inputs (x: float32[2]): ValueError: a",
                      "m.pt: export failed: ValueError: b"]
