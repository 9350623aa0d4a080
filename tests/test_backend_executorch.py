"""ExecuTorch in the backend matrix (--backends executorch; EG406/EG407): torch.export lowered to
the XNNPACK delegate and run with ExecuTorch's runtime. ``pytest -m runtime`` with
``evalguard[executorch]`` installed builds it (about 20 s for a small CNN here); without it the row
and the backend rules are skipped with the reason."""
from __future__ import annotations

import importlib.util
import json

import pytest

from evalguard.checks.onnx import backend_executorch, backends

HAVE_EXECUTORCH = importlib.util.find_spec("executorch") is not None

MODEL = """import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.head = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8 * 6 * 6, 5)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        if COMPILE_ONLY and torch.compiler.is_compiling():
            h = h * 1.01
        return self.head(h.flatten(1))


def build_model():
    torch.manual_seed(0)
    model = Net().train()
    for _ in range(3):
        model(torch.randn(8, 3, 8, 8))
    return model.eval()
"""


def audit(run_cli, tmp_path, compile_only=False):
    factory = tmp_path / "net.py"
    factory.write_text(MODEL.replace("COMPILE_ONLY", str(compile_only)))
    code, out, err = run_cli("check", "--model", f"{factory}:build_model", "--input-shape", "4x3x8x8",
                             "--backends", "onnxruntime,executorch", "--format", "json")
    assert code in (0, 1), err
    report = json.loads(out)
    [target] = report["targets"]
    rows = {b["backend"]: b for b in target["facts"]["onnx"]["backends"]}
    return report, target, rows["executorch"]


def test_the_cuda_variant_is_skipped_with_the_reason():
    [_, cuda] = backends.variants(["executorch"], "cuda")
    assert cuda.skip_reason == backend_executorch.CPU_ONLY


@pytest.mark.skipif(HAVE_EXECUTORCH, reason="executorch is installed here: the not-installed path cannot be seen")
def test_without_executorch_the_row_and_rules_are_skipped_with_the_reason(run_cli, tmp_path):
    report, target, row = audit(run_cli, tmp_path)
    assert report["findings"] == []
    assert row["status"] == "skipped" and row["skip_reason"] == backend_executorch.NOT_INSTALLED
    assert target["coverage"]["EG406"]["status"] == "skipped"


@pytest.mark.runtime
@pytest.mark.skipif(not HAVE_EXECUTORCH, reason=backend_executorch.NOT_INSTALLED)
def test_executorch_matches_eager_at_both_batch_sizes_and_catches_a_capture_only_branch(run_cli, tmp_path):
    report, target, row = audit(run_cli, tmp_path)
    assert report["findings"] == [] and row["status"] == "matches" and row["max_abs_diff"] < 1e-4
    assert {r["batch"] for r in row["rows"]} == {4, 3}
    report, target, row = audit(run_cli, tmp_path, compile_only=True)   # torch.export takes the branch
    assert row["status"] == "differs"
    assert [f["evidence"]["backend"] for f in report["findings"] if f["rule"] == "EG406"] == ["executorch"]
