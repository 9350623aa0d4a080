"""OpenVINO in the backend matrix (--backends openvino,openvino-onnx; EG406/EG407).

Without openvino installed the rows are skipped with the reason and the backend rules say so
(the default lane); ``pytest -m runtime`` in an environment with ``evalguard[openvino]`` builds
both backends and compares them with eager PyTorch at both batch sizes.
"""
from __future__ import annotations

import importlib.util
import json

import pytest

from evalguard.checks.onnx import backend_openvino, backends

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAVE_OPENVINO, reason=backend_openvino.NOT_INSTALLED)

MODEL = """import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.head = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8 * 6 * 6, 5)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        if TRACE_ONLY and torch.jit.is_tracing():
            h = h * 1.01
        return self.head(h.flatten(1))


def build_model():
    torch.manual_seed(0)
    model = Net().train()
    for _ in range(3):
        model(torch.randn(8, 3, 8, 8))   # BatchNorm statistics of a trained model
    return model.eval()
"""


def audit(run_cli, tmp_path, trace_only=False, names="openvino,openvino-onnx", extra=()):
    factory = tmp_path / "net.py"
    factory.write_text(MODEL.replace("TRACE_ONLY", str(trace_only)))
    code, out, err = run_cli("check", "--model", f"{factory}:build_model", "--input-shape", "4x3x8x8",
                             "--backends", f"onnxruntime,{names}", *extra, "--format", "json")
    assert code in (0, 1), err
    report = json.loads(out)
    [target] = report["targets"]
    rows = {(b["backend"], b["device"]): b for b in target["facts"]["onnx"]["backends"]}
    return report, target, rows


def test_cuda_variants_of_openvino_are_skipped_with_the_reason():
    plan = backends.variants(["openvino", "torchscript"], "cuda")
    reasons = {(v.backend, v.device): v.skip_reason for v in plan}
    assert reasons[("openvino", "cuda")] == backend_openvino.NO_CUDA
    assert reasons[("torchscript", "cuda")] is None
    assert backend_openvino.unavailable_reason("torchscript") is None


@pytest.mark.skipif(HAVE_OPENVINO, reason="openvino is installed here: the not-installed path cannot be seen")
def test_without_openvino_the_rows_and_rules_are_skipped_with_the_reason(run_cli, tmp_path):
    report, target, rows = audit(run_cli, tmp_path)
    assert report["findings"] == []
    for name in backend_openvino.NAMES:
        assert rows[(name, "cpu")]["status"] == "skipped"
        assert rows[(name, "cpu")]["skip_reason"] == backend_openvino.NOT_INSTALLED
    for rule in ("EG406", "EG407"):
        assert target["coverage"][rule]["status"] == "skipped"
        assert "evalguard[openvino]" in target["coverage"][rule]["reason"]


@pytest.mark.runtime
@needs_openvino
def test_openvino_from_pytorch_and_from_onnx_match_eager_at_both_batch_sizes(run_cli, tmp_path):
    report, target, rows = audit(run_cli, tmp_path)
    assert report["findings"] == []
    assert target["coverage"]["EG406"]["status"] == "passed"
    for name in backend_openvino.NAMES:
        row = rows[(name, "cpu")]
        assert row["status"] == "matches" and row["max_abs_diff"] < 1e-4
        assert set(row["latency_ms"]) == {"4", "3"} and row["build_seconds"] > 0
        assert {r["batch"] for r in row["rows"]} == {4, 3}
        assert any("INFERENCE_PRECISION_HINT=f32" in note for note in row["notes"])


@pytest.mark.runtime
@needs_openvino
def test_a_trace_only_branch_makes_the_openvino_conversion_differ(run_cli, tmp_path):
    """OpenVINO's PyTorch frontend traces the model: a branch taken only while tracing is converted."""
    report, target, rows = audit(run_cli, tmp_path, trace_only=True, names="openvino")
    assert rows[("openvino", "cpu")]["status"] == "differs"
    [finding] = [f for f in report["findings"] if f["rule"] == "EG406"]
    assert finding["evidence"]["backend"] == "openvino" and "openvino backend" in finding["message"]
